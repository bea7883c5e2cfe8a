"""Spans for agent runs, in the same trace store as ``lamina serve`` (``lamina traces``).

A run is one trace: ``agent.run`` at the root, an ``agent.model`` span per model call and an
``agent.tool`` span per tool call under it (crews add ``crew.run`` and ``crew.handoff``).
The tracer is :class:`lamina.telemetry.tracers.StepTracer`, shared with the chains: without
OpenTelemetry installed (the ``server`` extra) spans are skipped; the run result still holds
every step.
"""

from __future__ import annotations

from lamina.settings import Settings
from lamina.telemetry.tracers import StepTracer, attributes

__all__ = ["RunTracer", "attributes"]


class RunTracer(StepTracer):
    """Opens spans under the current one; ``trace_id`` of the innermost open span."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "lamina.agents")
