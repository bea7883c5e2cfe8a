"""``lamina summarize``, ``classify``, ``extract``, ``email reply|draft`` and ``research``.

Each command reads a file, a folder or stdin (``-``), calls the function of the same name in
:mod:`lamina.apps`, and prints the result (``--json``: one JSON object).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from lamina.cli.app import ModelOpt, app, edge, err, out, progress_bar
from lamina.errors import InvalidRequestError

email_app = typer.Typer(
    help="Write emails: reply to one, or draft a new one.", no_args_is_help=True
)
app.add_typer(email_app, name="email")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
MAX_STDIN_CHARS = 20_000_000


def _read_text(value: str) -> str:
    """``-`` is stdin, an existing file is its text, anything else is the text itself."""
    if value == "-":
        text = sys.stdin.read(MAX_STDIN_CHARS + 1)
        if len(text) > MAX_STDIN_CHARS:
            raise InvalidRequestError(f"stdin holds more than {MAX_STDIN_CHARS} characters.")
        return text
    path = Path(value)
    if len(value) < 4096 and path.is_file():
        from lamina.apps.inputs import load_inputs

        return load_inputs([path])[0].text
    return value


def _given(value: str | None, what: str) -> str:
    """The argument, or ``-`` (stdin) when it was left out and stdin is a pipe."""
    if value is not None:
        return value
    if not sys.stdin.isatty():
        return "-"
    raise InvalidRequestError(f"Give {what} as an argument, or pipe it in (- reads stdin).")


def _print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, ensure_ascii=False))


def _model(spec: str | None) -> Any:
    from lamina.models import get_model

    return get_model(spec)


@app.command()
@edge
def summarize(
    source: Annotated[
        str | None,
        typer.Argument(help="A file, a folder, or - for stdin (the default when piped)."),
    ] = None,
    length: Annotated[str, typer.Option(help="short (3 points), medium (6) or long (10).")] = (
        "medium"
    ),
    style: Annotated[str, typer.Option(help="bullets or prose.")] = "bullets",
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Summarise a document or a folder of any size; each point names its section."""
    from lamina.apps import summarize as run
    from lamina.apps.inputs import STDIN, load_inputs, text_document

    source = _given(source, "a file or a folder")
    if source == "-":
        documents = [text_document(_read_text("-"), STDIN)]
    else:
        documents = load_inputs(
            [source], skipped=lambda name, why: err.print(f"(skipped {name}: {why})")
        )
    chosen = _model(model)
    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if total < 3:
            return  # a bar only for inputs long enough to wait for
        if bar is None:
            bar = progress_bar("Summarising")
            bar.start()
            bar.add_task("sections", total=total)
        bar.update(bar.task_ids[0], completed=done)

    try:
        summary = run(
            documents,
            model=chosen,
            length=length,  # type: ignore[arg-type]
            style=style,  # type: ignore[arg-type]
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.stop()
    if as_json:
        _print_json(summary.model_dump())
        return
    out.print(summary.text, markup=False)
    if summary.sections:
        out.print("\nSections:", markup=False)
        for s in summary.sections:
            where = f" > {s.heading}" if s.heading else ""
            page = f", page {s.page}" if s.page is not None else ""
            out.print(f"  [{s.n}] {s.source}{where}{page}, chars {s.start}-{s.end}", markup=False)
    err.print(
        f"({summary.read} sections read, {summary.rounds} reduce rounds, "
        f"{summary.usage.total_tokens} tokens)",
        highlight=False,
    )


@app.command()
@edge
def classify(
    text: Annotated[
        str | None, typer.Argument(help="The text, or - for stdin (the default when piped).")
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(help="Comma-separated labels, e.g. positive,negative,neutral."),
    ] = None,
    examples: Annotated[
        Path | None,
        typer.Option(help='Labelled examples, JSON lines {"text": ..., "label": ...}.'),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(help="zero-shot, few-shot (default with --examples) or knn (no model)."),
    ] = None,
    k: Annotated[int, typer.Option(help="Examples shown (few-shot) or voting (knn).")] = 4,
    selection: Annotated[
        str, typer.Option(help="Few-shot examples: similar (to the text) or balanced.")
    ] = "similar",
    samples: Annotated[
        int,
        typer.Option(help="Chain-of-thought samples; more than 1 votes (self-consistency)."),
    ] = 1,
    batch: Annotated[
        Path | None,
        typer.Option(help='Classify every line of a JSONL file {"text": ..., "label"?: gold}.'),
    ] = None,
    calibrate: Annotated[
        bool | None,
        typer.Option(
            help="Divide by the model's prior for content-free inputs (N/A); default: for "
            "zero-shot only."
        ),
    ] = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Label a text with one of --labels and a confidence; --batch scores a JSONL file."""
    from lamina.apps.classify import Classifier, check_labels, report
    from lamina.prompts.fewshot import load_examples

    shots = load_examples(examples) if examples is not None else []
    names = (
        check_labels(labels.split(",")) if labels else list(dict.fromkeys(e.output for e in shots))
    )
    if not names:
        raise InvalidRequestError("Say which labels to choose from: --labels a,b,c.")
    if method not in (None, "zero-shot", "few-shot", "knn"):
        raise InvalidRequestError(f"--method must be zero-shot, few-shot or knn, not {method!r}.")
    if selection not in ("similar", "balanced"):
        raise InvalidRequestError(f"--selection must be similar or balanced, not {selection!r}.")
    classifier = Classifier(
        names,
        model=None if method == "knn" else _model(model),
        examples=shots,
        method=method,  # type: ignore[arg-type]
        k=k,
        selection=selection,  # type: ignore[arg-type]
        samples=samples,
        calibrate=calibrate,
    )
    if batch is None:
        result = classifier.classify(_read_text(_given(text, "the text, or --batch FILE.jsonl")))
        if as_json:
            payload = result.model_dump()
            payload["usage"]["total_tokens"] = result.usage.total_tokens
            _print_json(payload)
        else:
            confidence = "" if result.confidence is None else f" ({result.confidence:.2f})"
            out.print(f"{result.label}{confidence}", markup=False)
        return
    records = _batch(batch)
    with progress_bar("Classifying") as bar:
        task = bar.add_task("texts", total=len(records))
        results = classifier.classify_many(
            [r["text"] for r in records], lambda n: bar.update(task, completed=n)
        )
    gold = [r.get("label") for r in records]
    for record, result in zip(records, results, strict=True):
        if not as_json:
            line = {"text": record["text"], **result.model_dump(include={"label", "confidence"})}
            if record.get("label") is not None:
                line["gold"] = record["label"]
            _print_json(line)
    metrics = None
    if all(isinstance(g, str) for g in gold):
        metrics = report([str(g) for g in gold], [r.label for r in results], names)
        err.print(
            f"accuracy {metrics.accuracy:.3f}, macro F1 {metrics.macro_f1:.3f} "
            f"over {metrics.n} texts ({classifier.method})",
            highlight=False,
        )
    if as_json:
        _print_json(
            {
                "predictions": [r.model_dump(include={"label", "confidence"}) for r in results],
                "metrics": metrics.model_dump() if metrics is not None else None,
            }
        )


def _batch(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidRequestError(f"No file at {str(path)!r}.") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{path.name}:{number}: not JSON ({exc.msg}).") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InvalidRequestError(f'{path.name}:{number}: needs a "text" string.')
        if "label" in record and not isinstance(record["label"], str):
            raise InvalidRequestError(f'{path.name}:{number}: "label" must be a string.')
        records.append(record)
    if not records:
        raise InvalidRequestError(f"{str(path)!r} holds no records.")
    return records


@app.command()
@edge
def extract(
    schema: Annotated[Path, typer.Option(help="A JSON Schema file: the fields to extract.")],
    text: Annotated[
        str | None,
        typer.Argument(help="The text, a file, or - for stdin (the default when piped)."),
    ] = None,
    instructions: Annotated[str, typer.Option(help="Extra guidance for the model.")] = "",
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Extract fields and entities from a text as JSON that validates against --schema."""
    from lamina.apps import extract as run
    from lamina.apps.extract import load_schema

    shape = load_schema(schema)
    source = _read_text(_given(text, "the text or a file"))
    result = run(source, shape, model=_model(model), instructions=instructions)
    if as_json:
        _print_json(result.model_dump())
    else:
        out.print_json(json.dumps(result.data, ensure_ascii=False))


@contextmanager
def _index(index: Path | None, docs: list[Path] | None) -> Iterator[Any]:
    """The index to take facts from: --index, and/or --docs ingested (into a temp index)."""
    from lamina.retrieval.index import Index

    if index is None and not docs:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="lamina-apps-") as scratch:
        directory = index if index is not None else Path(scratch)
        if index is not None and not docs and not (index / "lamina.sqlite").exists():
            raise InvalidRequestError(
                f"No index at {str(index)!r}. Build one with: lamina ingest PATH --index {index}"
            )
        with Index(directory) as opened:
            if docs:
                opened.ingest(docs, collection="default")
            yield opened


ToneOpt = Annotated[str, typer.Option(help="neutral, friendly, formal or firm.")]
LengthOpt = Annotated[str, typer.Option(help="short, medium or long.")]
IndexOpt = Annotated[
    Path | None, typer.Option("--index", "-i", help="Take facts from this index, with citations.")
]
DocsOpt = Annotated[
    list[Path] | None, typer.Option("--docs", help="Take facts from these files/folders.")
]


def _show_draft(result: Any, as_json: bool) -> None:
    if as_json:
        _print_json(result.model_dump())
        return
    out.print(result.text(), markup=False)
    if result.citations:
        out.print("\nFacts cited:", markup=False)
        for fact in result.citations:
            c = fact.citation
            mark = "verified" if c.verified else "NOT verified"
            out.print(f"  [{fact.n}] {c.source}, chars {c.start}-{c.end} ({mark})", markup=False)
            out.print(f'      "{fact.text}"', markup=False)


@email_app.command("reply")
@edge
def email_reply(
    message: Annotated[
        str | None,
        typer.Argument(help="The email: a file, or - for stdin (the default when piped)."),
    ] = None,
    tone: ToneOpt = "neutral",
    length: LengthOpt = "short",
    say: Annotated[str, typer.Option(help="What the reply should say (your intent).")] = "",
    sign: Annotated[str, typer.Option(help="Sign with this name.")] = "",
    index: IndexOpt = None,
    docs: DocsOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Draft a reply to an email (headers optional), with facts from your documents."""
    from lamina.apps import reply

    raw = _read_text(_given(message, "the email (a file)"))
    with _index(index, docs) as opened:
        result = reply(
            raw,
            model=_model(model),
            tone=tone,  # type: ignore[arg-type]
            length=length,  # type: ignore[arg-type]
            instructions=say,
            index=opened,
            signature=sign,
        )
    _show_draft(result, as_json)


@email_app.command("draft")
@edge
def email_draft(
    brief: Annotated[
        str | None, typer.Argument(help="What the email should do, or - for stdin.")
    ] = None,
    to: Annotated[str, typer.Option(help="Who it is for.")] = "",
    tone: ToneOpt = "neutral",
    length: LengthOpt = "short",
    sign: Annotated[str, typer.Option(help="Sign with this name.")] = "",
    index: IndexOpt = None,
    docs: DocsOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a new email from a short brief, with facts from your documents."""
    from lamina.apps import draft

    text = _read_text(_given(brief, "the brief"))
    with _index(index, docs) as opened:
        result = draft(
            text,
            to=to,
            model=_model(model),
            tone=tone,  # type: ignore[arg-type]
            length=length,  # type: ignore[arg-type]
            index=opened,
            signature=sign,
        )
    _show_draft(result, as_json)


@app.command()
@edge
def research(
    question: Annotated[str, typer.Argument(help="What to research.")],
    docs: DocsOpt = None,
    index: Annotated[Path | None, typer.Option("--index", "-i", help="An index to search.")] = (
        None
    ),
    web: Annotated[
        bool,
        typer.Option(help="Also search the web (tools.web_search_url must name a provider)."),
    ] = False,
    questions: Annotated[int, typer.Option(help="Sub-questions to plan (0 to 6).")] = 3,
    strategy: Annotated[
        str, typer.Option(help="extract (quote sources, default) or generate.")
    ] = "extract",
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A report with sections and verified citations from your documents (and the web)."""
    from lamina.apps import research as run
    from lamina.errors import ConfigError
    from lamina.settings import get_settings

    if index is None and not docs:
        raise InvalidRequestError("Say where to look: --docs PATH (repeatable), --index DIR.")
    if strategy not in ("extract", "select", "generate"):
        raise InvalidRequestError(f"--strategy must be extract, select or generate: {strategy!r}")
    provider = None
    if web:
        url = get_settings().tools.web_search_url
        if not url:
            raise ConfigError(
                "--web needs a search provider: set tools.web_search_url "
                "(LAMINA_TOOLS__WEB_SEARCH_URL) to a SearxNG-compatible endpoint."
            )
        from lamina.tools.web import SearxngProvider

        provider = SearxngProvider(url)
    with _index(index, docs) as opened:
        report = run(
            question,
            opened,
            model=_model(model),
            web=provider,
            questions=questions,
            strategy=strategy,  # type: ignore[arg-type]
        )
    if as_json:
        _print_json(report.model_dump())
        return
    out.print(report.markdown(), markup=False)
    err.print(f"({report.usage.total_tokens} tokens; trace {report.trace_id})", highlight=False)
