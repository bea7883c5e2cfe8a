"""``lamina ask`` and grounded ``lamina chat --index`` (``lamina eval rag`` is in ``eval``)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from lamina.cli.app import ModelOpt, app, edge, err, out, repl
from lamina.errors import InvalidRequestError

StrategyOpt = Annotated[
    str, typer.Option(help="extract (quote the best sentence), select or generate.")
]
IndexOpt = Annotated[Path | None, typer.Option("--index", "-i", help="The index directory.")]
DocsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--docs", help="Ingest these files/folders first (into --index, else a temp one)."
    ),
]
CollectionOpt = Annotated[
    str | None, typer.Option(help="Search only this collection (default: all).")
]


@contextmanager
def _open_index(index: Path | None, docs: list[Path] | None) -> Iterator[Any]:
    from lamina.retrieval.index import Index

    if index is None and not docs:
        raise InvalidRequestError("Say where to look: --index DIR, --docs PATH, or both.")
    with tempfile.TemporaryDirectory(prefix="lamina-ask-") as scratch:
        directory = index if index is not None else Path(scratch)
        if index is not None and not docs and not (index / "lamina.sqlite").exists():
            raise InvalidRequestError(
                f"No index at {str(index)!r}. Build one with: lamina ingest PATH --index {index}"
                " (or pass --docs PATH)."
            )
        with Index(directory) as opened:
            if docs:
                summary = opened.ingest(docs, collection="default")
                err.print(
                    f"(ingested {summary.added + summary.updated + summary.unchanged} documents)",
                    highlight=False,
                )
            yield opened


def _pipeline(index: Any, model: str | None, strategy: str, collection: str | None) -> Any:
    from lamina.models import get_model
    from lamina.rag import RagConfig, RagPipeline

    if strategy not in ("extract", "select", "generate"):
        raise typer.BadParameter(f"{strategy!r} is not one of extract, select, generate")
    config = RagConfig(strategy=strategy, collection=collection)
    return RagPipeline(index, get_model(model), config=config)


def _stream_answer(events: Iterator[Any]) -> Any:
    """Show drafts as they stream on stderr; print only the final answer on stdout.

    A generated draft may be retracted (its sentences unsupported) and replaced, so nothing
    reaches stdout until the answer is final: a pipe gets exactly one answer.
    """
    from lamina.rag import Answer, Retry, Token

    drafting = False
    for event in events:
        if isinstance(event, Token) and not event.final:
            err.out(event.text, end="", style="dim", highlight=False)
            drafting = True
        elif isinstance(event, Retry):
            err.print(f"\n(retrying: {event.reason})", highlight=False)
        elif isinstance(event, Answer):
            if drafting:
                err.print()
            out.print(event.answer)
            return event
    raise AssertionError("no answer")  # pragma: no cover


def _print_sources(answer: Any) -> None:
    if answer.found:
        out.print("\nSources:")
        for c in answer.citations:
            page = f", page {c.page}" if c.page is not None else ""
            mark = "verified" if c.verified else "NOT verified"
            quote = " ".join(c.quote.split())
            out.print(f"  [{c.n}] {c.source}{page}, chars {c.start}-{c.end} ({mark})")
            out.print(f'      "{quote}"')
    else:
        out.print("\nClosest sources:")
        for source, page in dict.fromkeys((s.source, s.page) for s in answer.sources):
            out.print(f"  - {source}" + (f", page {page}" if page is not None else ""))
    if answer.left_out:
        reasons = sorted({x.reason for x in answer.left_out})
        err.print(
            f"({len(answer.left_out)} retrieved passages left out of the prompt: "
            f"{', '.join(reasons)})"
        )


@app.command()
@edge
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    index: IndexOpt = None,
    docs: DocsOpt = None,
    model: ModelOpt = None,
    strategy: StrategyOpt = "extract",
    collection: CollectionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Answer a question from your documents, with verified citations."""
    with _open_index(index, docs) as opened:
        pipeline = _pipeline(opened, model, strategy, collection)
        if as_json:
            answer = pipeline.ask(question)
            payload = answer.public()
            # The same object as POST /v1/ask (lamina.server.routes.ask.answer_payload).
            from lamina.retrieval.documents import stable_id

            for cited in payload["citations"]:
                cited["document_id"] = stable_id(cited["source"])
            payload["query"] = answer.query
            payload["strategy"] = answer.strategy
            payload["sources"] = [
                {
                    **s.model_dump(include={"n", "source", "title", "page", "start", "end"}),
                    "score": round(s.score, 4),
                    "document_id": stable_id(s.source),
                }
                for s in answer.sources
            ]
            payload["run_id"] = _record_run(answer, pipeline.model.name, strategy)
            typer.echo(json.dumps(payload, ensure_ascii=False))
            return
        answer = _stream_answer(pipeline.stream(question))
        _print_sources(answer)
        _record_run(answer, pipeline.model.name, strategy)


def _record_run(answer: Any, model: str, strategy: str) -> str | None:
    """Keep the answer for ``lamina feedback``; a store that cannot be written costs a note on
    stderr, never the answer."""
    import sqlite3

    from lamina.errors import ConfigError
    from lamina.feedback import FeedbackStore

    citations = [
        c.model_dump(include={"n", "source", "page", "start", "end", "quote"})
        for c in answer.citations
    ]
    try:
        run_id = FeedbackStore().record(
            "ask",
            answer.question,
            answer.answer,
            model=model,
            citations=citations,
            meta={"strategy": strategy, "found": answer.found},
        )
    except (OSError, sqlite3.Error, ConfigError) as exc:
        err.print(f"(answer not recorded for feedback: {exc})", highlight=False)
        return None
    err.print(f"run id: {run_id} (rate it: lamina feedback {run_id} up|down)", highlight=False)
    return run_id


def grounded_chat(index: Path, model: str | None, strategy: str = "extract") -> None:
    """The loop of ``lamina chat --index``: each turn is a grounded answer; follow-ups work."""
    from lamina.rag import GroundedChat

    with _open_index(index, None) as opened:
        talk = GroundedChat(_pipeline(opened, model, strategy, None))

        def turn(line: str) -> None:
            answer = _stream_answer(talk.stream(line))
            if answer.query != line:
                err.print(f"(searched for: {answer.query})", highlight=False)
            _print_sources(answer)

        repl(f"Grounded chat over {index}. /reset, /exit.", turn, talk.reset)
