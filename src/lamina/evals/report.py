"""Self-contained HTML reports of eval runs: one file, no network, every text escaped.

Plots are drawn by matplotlib (Agg backend, no display) as SVG and embedded as
``data:image/svg+xml;base64`` images: an ``<img>`` never runs script, so even a hostile
label inside a plot cannot. Everything else goes through a Jinja template with autoescaping
on: documents, questions and model outputs are untrusted, and a ``<script>`` in an answer is
shown as text.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from lamina.errors import MissingDependencyError
from lamina.evals.run import EvalRun, flatten, iter_numeric, lower_is_better

__all__ = ["Plot", "comparison_html", "report_html", "write_comparison", "write_report"]

#: Items shown in a report's table; the rest are counted, and all are in the JSON.
MAX_ROWS = 1000


@dataclass(frozen=True)
class Plot:
    title: str
    uri: str  # data:image/svg+xml;base64,...


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (
                resources.files("lamina.evals")
                .joinpath("templates", name)
                .read_text(encoding="utf-8")
            )
        ),
        undefined=jinja2.StrictUndefined,
        autoescape=True,  # hostile text everywhere: escape by default, never opt out
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("matplotlib", "eval") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _svg(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    _pyplot().close(figure)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _histogram(title: str, series: Sequence[tuple[str, list[float]]]) -> Plot:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(4.2, 2.6))
    values = [v for _, vs in series for v in vs]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    bins = 20 if high > low else 1
    for label, vs in series:
        axes.hist(vs, bins=bins, range=(low, high) if high > low else None, alpha=0.6, label=label)
    axes.set_title(title, fontsize=10)
    axes.set_ylabel("items")
    if len(series) > 1:
        axes.legend(fontsize=8)
    return Plot(title, _svg(figure))


#: Item fields that identify or locate an item rather than score it: no histogram.
_NOT_SCORES = {"id", "window", "start", "end", "chunk", "scored", "n"}


def _distribution_plots(run: EvalRun, limit: int = 12) -> list[Plot]:
    plots: list[Plot] = []
    for name, values in iter_numeric(run.items):
        if len(plots) == limit:
            break
        if name in _NOT_SCORES or name.startswith(("judge_details.", "rank_")):
            continue
        if values:
            plots.append(_histogram(name, [("", values)]))
    return plots


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _table(items: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    columns: dict[str, None] = {}
    for item in items:
        columns.update(dict.fromkeys(item))
    # Lists and objects (contexts, details) are long: after the fields one scans.
    nested = {c for c in columns if any(isinstance(i.get(c), list | dict) for i in items)}
    order = [c for c in columns if c not in nested] + [c for c in columns if c in nested]
    return order, [[_cell(item.get(c)) for c in order] for item in items]


def _meta(run: EvalRun) -> dict[str, str]:
    data = run.meta.model_dump(exclude={"notes"})
    data["started_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(run.meta.started_at))
    return {k: _cell(v) for k, v in data.items()}


def _format(value: float) -> str:
    return f"{value:.4g}"


def report_html(run: EvalRun, title: str | None = None) -> str:
    """The report of one run as an HTML document (a str)."""
    worst = run.worst_first()
    columns, rows = _table(worst[:MAX_ROWS])
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title or f"lamina eval {run.kind}",
            summary=[(k, _format(v)) for k, v in run.metrics().items()],
            meta=_meta(run),
            notes=run.meta.notes,
            plots=_distribution_plots(run),
            primary=run.primary,
            direction="highest" if run.primary_lower_is_better else "lowest",
            columns=columns,
            rows=rows,
            hidden=max(0, len(worst) - MAX_ROWS),
            total=len(worst),
        )
    )


def write_report(run: EvalRun, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(run), encoding="utf-8")
    return path


def _item_key(item: dict[str, Any]) -> str | None:
    for key in ("id", "question", "window"):
        if key in item:
            return str(item[key])
    return None


def _change_plot(rows: Sequence[tuple[str, float, float]]) -> Plot | None:
    changed = [(m, a, b) for m, a, b in rows if a != 0 and not (math.isnan(a) or math.isnan(b))]
    if not changed:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 0.35 * len(changed) + 1))
    names = [m for m, _, _ in changed]
    relative = [100 * (b - a) / abs(a) for _, a, b in changed]
    better = [(r < 0) == lower_is_better(m) or r == 0 for m, r in zip(names, relative, strict=True)]
    axes.barh(names, relative, color=["#2a7" if g else "#c33" for g in better])
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("change from A to B (%)")
    axes.invert_yaxis()
    return Plot("summary metrics: B relative to A (green = better)", _svg(figure))


def comparison_html(a: EvalRun, b: EvalRun, names: tuple[str, str] = ("A", "B")) -> str:
    """Two runs side by side: summary with deltas, plots, items that changed most first."""
    ma, mb = a.metrics(), b.metrics()
    common = [m for m in ma if m in mb]
    summary = [
        (m, _format(ma[m]), _format(mb[m]), f"{mb[m] - ma[m]:+.4g}", _verdict(m, ma[m], mb[m]))
        for m in common
    ]
    only = sorted(set(ma) ^ set(mb))
    plots: list[Plot] = []
    if change := _change_plot([(m, ma[m], mb[m]) for m in common]):
        plots.append(change)
    primary = a.primary if a.primary == b.primary else None
    pairs: list[tuple[str, str, str, str]] = []
    if primary:
        va = [v for i in a.items if isinstance(v := flatten(i).get(primary), float)]
        vb = [v for i in b.items if isinstance(v := flatten(i).get(primary), float)]
        if va or vb:
            plots.append(_histogram(f"per-item {primary}", [(names[0], va), (names[1], vb)]))
        by_key = {k: i for i in b.items if (k := _item_key(i)) is not None}
        matched = []
        for item in a.items:
            key = _item_key(item)
            other = by_key.get(key) if key is not None else None
            x, y = flatten(item).get(primary), flatten(other or {}).get(primary)
            if key is not None and x is not None and y is not None:
                matched.append((key, x, y))
        sign = 1.0 if lower_is_better(primary) else -1.0
        matched.sort(key=lambda r: sign * (r[1] - r[2]))  # the biggest worsening first
        pairs = [(k, _format(x), _format(y), f"{y - x:+.4g}") for k, x, y in matched[:MAX_ROWS]]
    return (
        _environment()
        .get_template("compare.html.j2")
        .render(
            title=f"lamina eval compare: {a.kind} vs {b.kind}",
            names=names,
            metas=[_meta(a), _meta(b)],
            summary=summary,
            only=only,
            plots=plots,
            primary=primary,
            pairs=pairs,
        )
    )


def _verdict(metric: str, a: float, b: float) -> str:
    if a == b or math.isnan(a) or math.isnan(b):
        return "same"
    return "better" if (b < a) == lower_is_better(metric) else "worse"


def write_comparison(a: EvalRun, b: EvalRun, path: Path, names: tuple[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(comparison_html(a, b, names), encoding="utf-8")
    return path
