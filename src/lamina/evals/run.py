"""One evaluation run as data: what every ``lamina eval`` command prints, saves and compares.

A run is ``{<summary metrics>..., "items": [...], "meta": {...}}`` in JSON: the metrics sit at
the top level so ``jq .bleu`` works, one item per scored example (worst first in reports), and
``meta`` says what produced it. ``meta.trace_id`` is the trace of the command that made it
(``lamina traces show ID``: every pipeline, model and retrieval call of the run).

The regression gate compares a run with a saved baseline:

>>> base = EvalRun(kind="gen", summary={"bleu": 30.0, "perplexity": 10.0})
>>> now = EvalRun(kind="gen", summary={"bleu": 27.5, "perplexity": 10.4})
>>> [r.message() for r in regressions(now, base, {"bleu": "2", "perplexity": "5%"})]
['bleu dropped from 30 to 27.5 (a drop of 2.5; allowed 2)']
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lamina import __version__
from lamina.errors import InvalidRequestError

__all__ = [
    "EvalRun",
    "Regression",
    "RunMeta",
    "flatten",
    "load_run",
    "lower_is_better",
    "parse_drops",
    "regressions",
]

#: Metrics where a smaller number is better; a "drop" of these is a rise.
_LOWER_IS_BETTER = ("perplexity", "nll", "bits_per_byte", "latency", "_ms", "_s", "errors")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is the better one.

    >>> [lower_is_better(m) for m in ("perplexity", "hybrid.latency_p50_ms", "bleu")]
    [True, True, False]
    """
    leaf = metric.rsplit(".", 1)[-1]
    if "_per_" in leaf and not leaf.startswith("bits"):
        return False  # a rate: tokens_per_s
    return any(leaf == m or leaf.startswith(m) or leaf.endswith(m) for m in _LOWER_IS_BETTER)


class RunMeta(BaseModel):
    """What produced a run. ``trace_id`` links the run to its trace."""

    command: str = ""
    started_at: float = Field(default_factory=time.time)
    duration_s: float = 0.0
    lamina_version: str = __version__
    inputs: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    trace_id: str | None = None


class EvalRun(BaseModel):
    """A scored run. ``primary`` names the per-item field that ranks items worst-first."""

    kind: str
    summary: dict[str, Any] = Field(default_factory=dict)
    items: list[dict[str, Any]] = Field(default_factory=list)
    meta: RunMeta = Field(default_factory=RunMeta)
    primary: str | None = None

    @property
    def primary_lower_is_better(self) -> bool:
        return self.primary is not None and lower_is_better(self.primary)

    def worst_first(self) -> list[dict[str, Any]]:
        """Items ordered worst first by ``primary``; items without a value come last."""
        if not self.primary:
            return list(self.items)
        key, sign = self.primary, (-1.0 if self.primary_lower_is_better else 1.0)

        def rank(item: dict[str, Any]) -> tuple[int, float]:
            value = _lookup(item, key)
            if not isinstance(value, int | float) or math.isnan(value):
                return (1, 0.0)
            return (0, sign * float(value))

        return sorted(self.items, key=rank)

    def as_json(self) -> dict[str, Any]:
        """The document ``--json`` prints: summary at the top level, then items and meta."""
        return {
            **self.summary,
            "kind": self.kind,
            "primary": self.primary,
            "items": self.items,
            "meta": self.meta.model_dump(),
        }

    def dumps(self) -> str:
        return json.dumps(self.as_json(), indent=2, ensure_ascii=False, default=_plain)

    def metrics(self) -> dict[str, float]:
        """Every numeric summary value under its dotted name (``hybrid.ndcg@10``)."""
        return flatten(self.summary)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    if dotted in data:
        return data[dotted]
    head, _, rest = dotted.partition(".")
    inner = data.get(head)
    return _lookup(inner, rest) if rest and isinstance(inner, Mapping) else None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts under dotted names; booleans and text are left out.

    >>> flatten({"bleu": 31.2, "hybrid": {"ndcg@10": 0.8, "mode": "x"}, "ok": True})
    {'bleu': 31.2, 'hybrid.ndcg@10': 0.8}
    """
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def load_run(path: Path) -> EvalRun:
    """Read what ``lamina eval ... --json`` printed (or ``--save``d) back into a run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequestError(
            f"No run file at {str(path)!r}. Save one with: lamina eval ... --json > {path}"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequestError(
            f"{str(path)!r} is not the JSON of an eval run ({exc}). Save one with: "
            f"lamina eval ... --json > {path}"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{str(path)!r} holds JSON but not an eval run object.")
    items = data.pop("items", [])
    meta = data.pop("meta", {})
    kind = data.pop("kind", "unknown")
    primary = data.pop("primary", None)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidRequestError(f"{str(path)!r}: 'items' must be a list of objects.")
    return EvalRun(
        kind=str(kind),
        summary=data,
        items=items,
        meta=RunMeta.model_validate(meta if isinstance(meta, dict) else {}),
        primary=primary if isinstance(primary, str) else None,
    )


@dataclass(frozen=True)
class Regression:
    """A metric that got worse than a gate allows."""

    metric: str
    baseline: float
    current: float
    allowed: float

    @property
    def change(self) -> float:
        return abs(self.current - self.baseline)

    def message(self) -> str:
        verb = "rose" if lower_is_better(self.metric) else "dropped"
        return (
            f"{self.metric} {verb} from {self.baseline:.6g} to {self.current:.6g} "
            f"(a {'rise' if verb == 'rose' else 'drop'} of {self.change:.6g}; "
            f"allowed {self.allowed:.6g})"
        )


def parse_drops(specs: Sequence[str]) -> dict[str, str]:
    """``["bleu=2", "rougeL=5%"]`` → ``{"bleu": "2", "rougeL": "5%"}``, checked.

    >>> parse_drops(["bleu=2", "hybrid.ndcg@10=5%"])
    {'bleu': '2', 'hybrid.ndcg@10': '5%'}
    """
    drops: dict[str, str] = {}
    for spec in specs:
        metric, sep, amount = spec.partition("=")
        metric, amount = metric.strip(), amount.strip()
        try:
            ok = bool(sep and metric) and float(amount.removesuffix("%")) >= 0
        except ValueError:
            ok = False
        if not ok:
            raise InvalidRequestError(
                f"--max-drop {spec!r} is not METRIC=AMOUNT. Write e.g. --max-drop bleu=1.5 "
                f"(absolute) or --max-drop rougeL=5% (relative to the baseline)."
            )
        drops[metric] = amount
    return drops


def regressions(run: EvalRun, baseline: EvalRun, drops: Mapping[str, str]) -> list[Regression]:
    """The metrics of ``run`` that got worse than ``baseline`` by more than allowed.

    An amount ending in ``%`` is relative to the baseline value. "Worse" is a drop, or a
    rise for metrics where lower is better (perplexity, latency).
    """
    current, before = run.metrics(), baseline.metrics()
    found = []
    for metric, amount in drops.items():
        for name, values in (("this run", current), ("the baseline", before)):
            if metric not in values:
                known = ", ".join(sorted(values)) or "none"
                raise InvalidRequestError(
                    f"--max-drop names {metric!r}, which {name} does not have. "
                    f"Metrics it has: {known}."
                )
        base, now = before[metric], current[metric]
        allowed = abs(base) * float(amount[:-1]) / 100 if amount.endswith("%") else float(amount)
        worse = (now - base) if lower_is_better(metric) else (base - now)
        if worse > allowed + 1e-12 or math.isnan(now):
            found.append(Regression(metric, base, now, allowed))
    return found


def iter_numeric(items: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, list[float]]]:
    """Each numeric item field with its values, in first-seen order (for histograms)."""
    names: dict[str, None] = {}
    for item in items:
        for key, value in flatten(item).items():
            if not math.isnan(value):
                names.setdefault(key)
    for name in names:
        values = [flatten(i).get(name) for i in items]
        yield name, [v for v in values if v is not None and not math.isnan(v)]
