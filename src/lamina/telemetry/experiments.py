"""Tuning and eval runs logged to Weights & Biases, offline unless the user says otherwise.

Off by default. With ``telemetry.wandb = true`` (``LAMINA_TELEMETRY__WANDB=true``) and the
``wandb`` extra installed, each ``lamina tune`` and ``lamina eval`` run becomes a W&B run: its
options as the run's config, the training loss per step and the eval metrics as its history,
the final numbers as its summary. The mode is ``telemetry.wandb_mode``, else ``$WANDB_MODE``,
else ``offline``: the run is written under ``telemetry.wandb_dir`` (default
``$LAMINA_HOME/wandb``) and nothing is sent; ``wandb sync DIR/wandb/offline-run-*`` uploads it
later if you want it online. In offline mode wandb's error reports, system metrics and cloud
metadata probes are switched off too: an offline eval run makes no network connection, from
this process or wandb's own ``wandb-core`` (checked under strace in a network namespace with
loopback only, ``tests/telemetry/test_experiments.py``).

    >>> with experiment("eval", config={"k": 8}, settings=Settings()) as run:  # off: a no-op
    ...     run.log({"f1": 0.5})
    >>> run.directory is None
    True
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

from lamina.errors import ConfigError, MissingDependencyError
from lamina.settings import Settings, get_settings

__all__ = ["Experiment", "check", "experiment", "log_eval", "numeric"]


def numeric(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers among ``values``, nested dicts flattened with ``/``.

    >>> numeric({"f1": 0.5, "n": 3, "name": "x", "by": {"bleu": 12.0}, "ok": True})
    {'f1': 0.5, 'n': 3.0, 'by/bleu': 12.0}
    """
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(numeric(value, f"{name}/"))
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            out[name] = float(value)
    return out


class Experiment:
    """One run's log: ``log`` a step's metrics, ``summarize`` the final ones. Without W&B
    (the default) every call does nothing."""

    def __init__(self, run: Any = None) -> None:
        self.run = run

    @property
    def directory(self) -> Path | None:
        """The run's own folder (``.../wandb/offline-run-*``), None when not logging."""
        return Path(self.run.dir).parent if self.run is not None else None

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self.run is not None and (values := numeric(metrics)):
            self.run.log(values, step=step)

    def watch(self, progress: Callable[[Any], None] | None) -> Callable[[Any], None]:
        """A progress callback for the tuning loop that logs each training step's loss and
        tokens/s (``train/loss`` at step N), then passes the update on to ``progress``."""

        def update(event: Any) -> None:
            if getattr(event, "phase", None) == "train" and event.loss is not None:
                metrics = {"train/loss": event.loss, "train/tokens_per_s": event.tokens_per_s}
                self.log({k: v for k, v in metrics.items() if v is not None}, step=event.done)
            if progress is not None:
                progress(event)

        return update

    def summarize(self, metrics: Mapping[str, Any]) -> None:
        if self.run is not None:
            for key, value in numeric(metrics).items():
                self.run.summary[key] = value


Mode = Literal["offline", "online", "disabled"]


def _mode(settings: Settings) -> Mode:
    mode = settings.telemetry.wandb_mode or os.environ.get("WANDB_MODE", "").strip() or "offline"
    if mode == "dryrun":  # wandb's old name for offline
        return "offline"
    if mode not in ("offline", "online", "disabled"):
        raise ConfigError(
            f"WANDB_MODE={mode!r} is not a mode Lamina uses: set it to 'offline' (files only), "
            "'online' (sends to your W&B server) or 'disabled'."
        )
    return cast(Mode, mode)


def _wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise MissingDependencyError("wandb", "wandb") from exc
    return wandb


def check(settings: Settings | None = None) -> None:
    """Raise now what :func:`experiment` would raise at the end of a run: W&B on but not
    installed (:class:`MissingDependencyError` with the install command), or a mode Lamina
    does not use. A command calls it before its work, so none of it is lost to the error.

    >>> check(Settings())  # W&B off: nothing to check
    """
    settings = settings or get_settings()
    if settings.telemetry.wandb:
        _mode(settings)
        _wandb()


@contextmanager
def experiment(
    kind: str,
    *,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    settings: Settings | None = None,
) -> Iterator[Experiment]:
    """A W&B run around the block when ``telemetry.wandb`` is on, else a no-op; ``kind`` is the
    run's job type (``tune``, ``eval-rag``, ...). The run is finished when the block ends,
    marked failed if it raised."""
    settings = settings or get_settings()
    if not settings.telemetry.wandb:
        yield Experiment()
        return
    mode = _mode(settings)
    wandb = _wandb()
    directory = settings.telemetry.wandb_dir or settings.home / "wandb"
    directory.mkdir(parents=True, exist_ok=True)
    offline = mode != "online"
    with _quiet_reports(offline):
        run = wandb.init(
            project=settings.telemetry.wandb_project,
            job_type=kind,
            name=name,
            config=dict(config or {}),
            dir=str(directory),
            mode=mode,
            reinit="create_new",
            settings=wandb.Settings(
                silent=True,
                console="off",
                disable_git=True,
                x_disable_stats=offline,
                x_disable_machine_info=offline,
                x_disable_meta=offline,
            ),
        )
        failed = True
        try:
            yield Experiment(run)
            failed = False
        finally:
            run.finish(exit_code=1 if failed else 0)


@contextmanager
def _quiet_reports(offline: bool) -> Iterator[None]:
    """``WANDB_ERROR_REPORTING=false`` for the duration of an offline run, unless the user set
    it: wandb reports its own errors (Sentry) otherwise, a network call. wandb has no setting
    for it, only this variable, which its service process reads when ``wandb.init`` starts it;
    so it is set around the run and restored after, not left in the process environment.
    (That service lives on for the process: an offline run after an online one in the same
    process reuses a service started with reports on.)"""
    if not offline or "WANDB_ERROR_REPORTING" in os.environ:
        yield
        return
    os.environ["WANDB_ERROR_REPORTING"] = "false"
    try:
        yield
    finally:
        os.environ.pop("WANDB_ERROR_REPORTING", None)


def log_eval(run: Any, *, settings: Settings | None = None) -> Path | None:
    """Log a finished :class:`~lamina.evals.run.EvalRun` as one W&B run (when
    ``telemetry.wandb`` is on): its inputs and settings as config, each item's numbers as one
    history step (``item/f1``), the summary metrics as the run's summary. Returns the run's
    folder."""
    meta = run.meta
    config = {"kind": run.kind, **meta.inputs, **meta.settings, "trace_id": meta.trace_id}
    with experiment(f"eval-{run.kind}", config=config, settings=settings) as logged:
        for step, item in enumerate(run.items):
            # under item/: wandb would otherwise take the last item's value as the run's summary
            logged.log({f"item/{k}": v for k, v in item.items()}, step=step)
        logged.summarize(run.summary)
        return logged.directory
