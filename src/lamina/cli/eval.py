"""``lamina eval``: gen, ppl, rag, retrieval, agent and compare.

Every command prints a table (or ``--json``: the run, see :mod:`lamina.evals.run`), can write
a self-contained HTML report (``--report FILE.html``) and can gate on a baseline run
(``--baseline FILE --max-drop METRIC=X``: exit code 3 when a metric got worse than allowed).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lamina.cli.app import ModelOpt, app, edge, err, out, progress_bar
from lamina.errors import InvalidRequestError
from lamina.telemetry import spans
from lamina.telemetry.experiments import check as check_experiments
from lamina.telemetry.experiments import log_eval

eval_app = typer.Typer(
    help="Evaluate models, retrieval and RAG on your own data.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")

#: Exit code of a run that a regression gate failed (1 is an error, 2 a usage error).
GATE_EXIT = 3

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the run as JSON.")]
ReportOpt = Annotated[
    Path | None, typer.Option("--report", help="Write a self-contained HTML report here.")
]
BaselineOpt = Annotated[
    Path | None,
    typer.Option("--baseline", help="A saved run (--json output) to gate against."),
]
MaxDropOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--max-drop",
        help="METRIC=X: fail (exit 3) if METRIC is worse than the baseline by more than X "
        "(X% = relative). Repeatable.",
    ),
]


class _Gate:
    """The regression gate of one command: checked before the run, applied after it. What
    else the run's end needs is checked here too: W&B logging (:func:`_finish`), when on."""

    def __init__(self, baseline: Path | None, max_drop: list[str] | None) -> None:
        from lamina.evals.run import load_run, parse_drops

        # W&B on but not installed must fail before the eval, not after it (losing its output)
        check_experiments()
        self.drops = parse_drops(max_drop or [])
        if self.drops and baseline is None:
            raise InvalidRequestError("--max-drop needs --baseline FILE (a saved --json run).")
        if baseline is not None and not self.drops:
            raise InvalidRequestError(
                "--baseline needs at least one --max-drop METRIC=X saying what may not drop."
            )
        self.baseline = load_run(baseline) if baseline is not None else None
        self.path = baseline

    def check(self, run: Any) -> None:
        from lamina.evals.run import regressions

        if self.baseline is None:
            return
        found = regressions(run, self.baseline, self.drops)
        for regression in found:
            err.print(f"[bold red]regression:[/] {regression.message()}", highlight=False)
        if found:
            raise typer.Exit(GATE_EXIT)
        err.print(f"(gate passed against {self.path}: {', '.join(self.drops)})", highlight=False)


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    bar = progress_bar(description)
    with bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _finish(
    run: Any,
    table: Table,
    *,
    as_json: bool,
    report: Path | None,
    gate: _Gate,
    started: float,
) -> None:
    from lamina.evals.report import write_report

    run.meta.command = "lamina " + " ".join(sys.argv[1:])
    run.meta.duration_s = round(time.time() - started, 3)
    run.meta.trace_id = spans.current_trace_id()
    log_eval(run)  # to Weights & Biases when telemetry.wandb is on, offline by default
    for note in run.meta.notes:
        err.print(f"note: {note}", highlight=False)
    if report is not None:
        write_report(run, report)
        err.print(f"(report written to {report})", highlight=False)
    if as_json:
        typer.echo(run.dumps())
    else:
        out.print(table)
    gate.check(run)


def _number(value: float, percent: bool = False) -> str:
    if math.isnan(value):
        return "nan"
    if percent:
        return f"{value:.1%}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _metrics_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


@eval_app.command("gen")
@edge
def eval_gen(
    pred: Annotated[Path, typer.Option(help='Predictions: JSON lines {"id", "text"}.')],
    ref: Annotated[
        Path, typer.Option(help='References: JSON lines {"id", "text"}; an id may repeat.')
    ],
    as_json: JsonOpt = False,
    report: ReportOpt = None,
    baseline: BaselineOpt = None,
    max_drop: MaxDropOpt = None,
) -> None:
    """Exact match, token F1, BLEU, chrF (sacrebleu) and ROUGE-1/2/L (rouge-score)."""
    from lamina.evals.gen import evaluate_files

    started, gate = time.time(), _Gate(baseline, max_drop)
    with _progress("eval gen") as update:
        run = evaluate_files(pred, ref, progress=update)
    s = run.summary
    rows = [
        ("exact match", _number(s["exact_match"], percent=True)),
        ("token F1", _number(s["f1"])),
        ("BLEU (0-100)", _number(s["bleu"])),
        ("chrF (0-100)", _number(s["chrf"])),
        ("ROUGE-1 F", _number(s["rouge1"])),
        ("ROUGE-2 F", _number(s["rouge2"])),
        ("ROUGE-L F", _number(s["rougeL"])),
    ]
    title = f"{pred.name} vs {ref.name}: {s['n']} items, {s['references']} references"
    table = _metrics_table(title, rows)
    _finish(run, table, as_json=as_json, report=report, gate=gate, started=started)


@eval_app.command("ppl")
@edge
def eval_ppl(
    text: Annotated[Path, typer.Option(help="The text to score (UTF-8).")],
    model: ModelOpt = None,
    ctx: Annotated[int, typer.Option(help="Tokens per window (BOS included).")] = 512,
    stride: Annotated[int, typer.Option(help="Tokens between window starts.")] = 256,
    as_json: JsonOpt = False,
    report: ReportOpt = None,
    baseline: BaselineOpt = None,
    max_drop: MaxDropOpt = None,
) -> None:
    """Sliding-window perplexity of a local GGUF model on a text (llama.cpp)."""
    from lamina.evals.ppl import gguf_for_spec, perplexity
    from lamina.settings import get_settings

    started, gate = time.time(), _Gate(baseline, max_drop)
    settings = get_settings()
    path = gguf_for_spec(model, settings)
    try:
        content = text.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"Cannot read {str(text)!r} as UTF-8 text ({exc}).") from None
    with _progress("eval ppl") as update:
        run = perplexity(
            content, model_path=path, ctx=ctx, stride=stride, settings=settings, progress=update
        )
    run.meta.inputs["text"] = str(text)
    s = run.summary
    rows = [
        ("perplexity", _number(s["perplexity"])),
        ("scored tokens", str(s["tokens"])),
        ("mean NLL (nats/token)", _number(s["nll"])),
        ("bits per byte", _number(s["bits_per_byte"])),
        ("windows", str(s["windows"])),
        ("tokens/s", f"{s['tokens_per_s']:.0f}"),
    ]
    bos = "BOS per window" if run.meta.settings["bos"] else "no BOS"
    title = f"{text.name} under {path.name} (ctx {ctx}, stride {stride}, {bos})"
    table = _metrics_table(title, rows)
    _finish(run, table, as_json=as_json, report=report, gate=gate, started=started)


StrategyOpt = Annotated[
    str, typer.Option(help="extract (quote the best sentence), select or generate.")
]
IndexOpt = Annotated[Path | None, typer.Option("--index", "-i", help="The index directory.")]


@eval_app.command("rag")
@edge
def eval_rag(
    dataset: Annotated[Path, typer.Option(help="QA JSON lines: question, answers, source.")],
    index: IndexOpt = None,
    docs: Annotated[
        list[Path] | None,
        typer.Option("--docs", help="Ingest these files/folders first (into --index)."),
    ] = None,
    model: ModelOpt = None,
    strategy: StrategyOpt = "extract",
    collection: Annotated[
        str | None, typer.Option(help="Search only this collection (default: all).")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            help="Judge of the Ragas metrics: local (default, the bundled model), "
            "openai:MODEL, anthropic:MODEL, any model spec."
        ),
    ] = None,
    judged: Annotated[
        bool, typer.Option("--judged/--no-judge", help="Compute the judged (Ragas) metrics.")
    ] = True,
    as_json: JsonOpt = False,
    report: ReportOpt = None,
    baseline: BaselineOpt = None,
    max_drop: MaxDropOpt = None,
) -> None:
    """Containment, token F1, citations, not-found, latency; faithfulness, answer relevancy,
    context precision and recall judged by a model (Ragas' definitions)."""
    from lamina.cli.rag import _open_index, _pipeline
    from lamina.evals.judge import SMALL_JUDGE_NOTE, Judge
    from lamina.evals.rag import evaluate, load_dataset, to_run
    from lamina.models import get_model
    from lamina.settings import get_settings

    started, gate = time.time(), _Gate(baseline, max_drop)
    items = load_dataset(dataset)
    with _open_index(index, docs) as opened:
        pipeline = _pipeline(opened, model, strategy, collection)
        referee = None
        if judged:
            spec = judge or "local"
            same = spec == (model or get_settings().model)  # one model loaded, not two
            referee = Judge(pipeline.model if same else get_model(spec), opened.embedder)
        with _progress("eval rag") as update:
            result = evaluate(pipeline, items, lambda i, _: update(i, len(items)), judge=referee)
    run = to_run(result)
    run.meta.inputs = {"dataset": str(dataset), "index": str(index or docs)}
    run.meta.settings = {"strategy": strategy, "model": pipeline.model.name}
    if referee is not None:
        run.meta.settings["judge"] = referee.name
        if referee.name.startswith("local:SmolLM2"):
            run.meta.notes.append(SMALL_JUDGE_NOTE)
        if result.judged.get("errors"):
            run.meta.notes.append(
                f"{result.judged['errors']} judge replies could not be used (see each item's "
                f"judge_errors); those metrics are left out of the means"
            )
    rows = [
        ("answer containment", _number(result.containment, percent=True)),
        ("token F1", _number(result.token_f1)),
        ("citation accuracy (answered)", _number(result.citation_accuracy, percent=True)),
        ("answered (answerable)", _number(result.answered, percent=True)),
        ("not found (unanswerable)", _number(result.not_found, percent=True)),
        ("citation faithfulness", _number(result.faithfulness, percent=True)),
        ("latency p50", f"{result.latency_p50_ms:.0f} ms"),
        ("latency p95", f"{result.latency_p95_ms:.0f} ms"),
    ]
    for metric in ("faithfulness", "answer_relevancy", "context_precision", "context_recall"):
        if result.judged:
            value = result.judged.get(metric)
            count = result.judged.get(f"{metric}_n", 0)
            shown = "n/a" if value is None else _number(value)
            rows.append((f"judged {metric.replace('_', ' ')} (n={count})", shown))
    title = f"{dataset.name}: {result.answerable} answerable, {result.unanswerable} unanswerable"
    if referee is not None:
        title += f"; judge {referee.name}"
    table = _metrics_table(title, rows)
    _finish(run, table, as_json=as_json, report=report, gate=gate, started=started)


@eval_app.command("retrieval")
@edge
def eval_retrieval(
    index: Annotated[Path, typer.Option("--index", "-i", help="The index directory.")],
    questions: Annotated[int, typer.Option(help="How many passages to ask about.")] = 50,
    generator: Annotated[
        str, typer.Option(help="auto (the model, else sentences), model or sentences.")
    ] = "auto",
    model: ModelOpt = None,
    k: Annotated[int, typer.Option("-k", help="Recall@k cut-off.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the passage sample.")] = 0,
    as_json: JsonOpt = False,
    report: ReportOpt = None,
    baseline: BaselineOpt = None,
    max_drop: MaxDropOpt = None,
) -> None:
    """nDCG@10, Recall@k and MRR of finding the passage each synthetic question came from,
    per search mode."""
    from lamina.evals.retrieval import evaluate_retrieval
    from lamina.models import get_model
    from lamina.retrieval.index import Index

    started, gate = time.time(), _Gate(baseline, max_drop)
    if generator not in ("auto", "model", "sentences"):
        raise typer.BadParameter(f"{generator!r} is not one of auto, model, sentences")
    if not (index / "lamina.sqlite").exists():
        raise InvalidRequestError(
            f"No index at {str(index)!r}. Build one with: lamina ingest PATH --index {index}"
        )
    chat = get_model(model) if model else None
    with Index(index, create=False) as opened, _progress("eval retrieval") as update:
        run = evaluate_retrieval(
            opened,
            questions=questions,
            generator=generator,  # type: ignore[arg-type]
            model=chat,
            k=k,
            seed=seed,
            progress=update,
        )
    s = run.summary
    modes = [m for m in ("bm25", "dense", "hybrid") if m in s]
    table = Table(title=f"{index}: {s['questions']} synthetic questions ({s['generator']})")
    table.add_column("metric")
    for mode in modes:
        table.add_column(mode, justify="right")
    for metric in ("ndcg@10", f"recall@{k}", "mrr@10", "latency_p50_ms"):
        table.add_row(metric, *[_number(s[m][metric]) for m in modes])
    _finish(run, table, as_json=as_json, report=report, gate=gate, started=started)


@eval_app.command("agent")
@edge
def eval_agent(
    tasks: Annotated[
        Path,
        typer.Option(help='The suite: JSON lines {"id", "kind", "task", "expect": [...]}.'),
    ] = Path("samples/agent_tasks.jsonl"),
    model: ModelOpt = None,
    tools: Annotated[
        str, typer.Option(help="The tools offered on every task, comma-separated.")
    ] = "calculator,python,search_documents",
    index: IndexOpt = None,
    docs: Annotated[
        list[Path] | None,
        typer.Option(
            "--docs",
            help="Index these for search_documents (default: samples/corpus when there).",
        ),
    ] = None,
    kinds: Annotated[str | None, typer.Option(help="Only tasks of these kinds.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N tasks.")] = None,
    max_steps: Annotated[int, typer.Option(help="Model calls per task at most.")] = 8,
    as_json: JsonOpt = False,
    report: ReportOpt = None,
    baseline: BaselineOpt = None,
    max_drop: MaxDropOpt = None,
) -> None:
    """Lamina's agent on a task suite: success rate (per kind), valid tool calls, mean model
    calls, tool calls and tokens."""
    import tempfile

    from lamina.evals.agent import evaluate_agent, load_tasks
    from lamina.models import get_model
    from lamina.retrieval.index import Index
    from lamina.settings import get_settings
    from lamina.tools import ToolContext, get_tools

    started, gate = time.time(), _Gate(baseline, max_drop)
    suite = load_tasks(tasks, kinds.split(",") if kinds else None, limit)
    names = [n.strip() for n in tools.split(",") if n.strip()]
    notes = []
    with tempfile.TemporaryDirectory(prefix="lamina-eval-agent-") as scratch:
        where = index
        if "search_documents" in names and index is None:
            sources = docs or ([Path("samples/corpus")] if Path("samples/corpus").is_dir() else [])
            if sources:
                where = Path(scratch) / "index"
                with Index(where) as opened:
                    opened.ingest(sources)
                notes.append(
                    f"search_documents reads a fresh index of {', '.join(map(str, sources))}"
                )
            else:
                names.remove("search_documents")
                notes.append("search_documents left out: give --index DIR or --docs PATH")
        elif index is not None and not (index / "lamina.sqlite").exists():
            raise InvalidRequestError(
                f"No index at {str(index)!r}. Build one with: lamina ingest PATH --index {index}"
            )
        settings = get_settings()
        offered = get_tools(names, ToolContext(settings=settings, index=where))
        with _progress("eval agent") as update:
            run = evaluate_agent(
                suite,
                get_model(model),
                offered,
                settings=settings,
                max_steps=max_steps,
                progress=update,
            )
    run.meta.inputs = {"tasks": str(tasks), "index": str(where or "")}
    run.meta.notes.extend(notes)
    s = run.summary
    valid = "n/a" if s["valid_calls"] is None else _number(s["valid_calls"], percent=True)
    rows = [
        ("success", _number(s["success"], percent=True)),
        *((f"success: {k}", _number(v, percent=True)) for k, v in s["by_kind"].items()),
        (f"valid tool calls (of {s['calls']})", valid),
        ("model calls per task", f"{s['mean_model_calls']:.1f}"),
        ("tool calls per task", f"{s['mean_tool_calls']:.1f}"),
        ("tokens per task", f"{s['mean_tokens']:.0f}"),
        ("seconds per task", f"{s['mean_seconds']:.1f}"),
        ("stop reasons", ", ".join(f"{k} {v}" for k, v in s["stop_reasons"].items())),
    ]
    title = f"{tasks.name}: {s['tasks']} tasks, {run.meta.settings['model']}"
    table = _metrics_table(title, rows)
    _finish(run, table, as_json=as_json, report=report, gate=gate, started=started)


@eval_app.command("compare")
@edge
def eval_compare(
    a: Annotated[Path, typer.Argument(help="A saved run (--json output).")],
    b: Annotated[Path, typer.Argument(help="Another saved run.")],
    report: ReportOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Two runs side by side: every shared metric with its change."""
    import json

    from lamina.evals.report import write_comparison
    from lamina.evals.run import load_run, lower_is_better

    first, second = load_run(a), load_run(b)
    ma, mb = first.metrics(), second.metrics()
    common = [m for m in ma if m in mb]
    if not common:
        raise InvalidRequestError(
            f"{str(a)!r} ({first.kind}) and {str(b)!r} ({second.kind}) share no metric to compare."
        )
    if report is not None:
        write_comparison(first, second, report, (str(a), str(b)))
        err.print(f"(report written to {report})", highlight=False)
    if as_json:
        rows = {m: {"a": ma[m], "b": mb[m], "change": mb[m] - ma[m]} for m in common}
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"A = {a}, B = {b}")
    for column in ("metric", "A", "B", "B - A"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m in common:
        change = mb[m] - ma[m]
        better = change != 0 and (change < 0) == lower_is_better(m)
        style = "green" if better else ("red" if change else "")
        shown = f"[{style}]{change:+.4g}[/]" if style else f"{change:+.4g}"
        table.add_row(m, _number(ma[m]), _number(mb[m]), shown)
    out.print(table)
