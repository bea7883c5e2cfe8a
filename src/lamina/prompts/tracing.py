"""Spans for chains, reasoning and the apps, in Lamina's trace store (``lamina traces``).

The tracer the agents use (:class:`lamina.telemetry.tracers.StepTracer`): one trace per run,
one span per step, attributes under ``lamina.``, long text cut. Without OpenTelemetry (the
``server`` extra) spans are skipped and the run's own result is the only record.
"""

from __future__ import annotations

from lamina.settings import Settings, get_settings
from lamina.telemetry.tracers import StepTracer, attributes

__all__ = ["Tracer", "attributes"]


class Tracer(StepTracer):
    """Opens spans under the current one (so a chain inside an agent run nests in it);
    ``enabled=False`` gives one whose spans record nothing."""

    def __init__(
        self,
        settings: Settings | None = None,
        name: str = "lamina.prompts",
        *,
        enabled: bool = True,
    ) -> None:
        super().__init__(settings or get_settings(), name, enabled=enabled)
