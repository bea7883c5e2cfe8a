"""``lamina ingest``, ``lamina search`` and ``lamina bench beir``: the retrieval commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lamina.cli.app import app, edge, err, progress_bar
from lamina.retrieval.search import MODES, Mode

bench_app = typer.Typer(help="Benchmarks with standard datasets.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="The index directory.")]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Where the source of truth lives, by URL scheme: postgresql://… (PostgreSQL with "
        "pgvector; --index then holds only derived search indexes), sqlite://PATH or a path. "
        "Default: DIR/lamina.sqlite.",
    ),
]
EmbedderOpt = Annotated[
    str | None,
    typer.Option(help="Embedder spec: minilm (bundled), st:PATH, openai:MODEL[@URL]."),
]


def _mode(value: str) -> Mode:
    if value not in MODES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(MODES)}")
    return value  # type: ignore[return-value]


@app.command()
@edge
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to ingest.")],
    index: IndexOpt,
    collection: Annotated[str, typer.Option(help="Collection to ingest into.")] = "default",
    include: Annotated[
        list[str] | None, typer.Option(help="Only files matching this glob; repeatable.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Leave out files matching this glob; repeatable.")
    ] = None,
    embedder: EmbedderOpt = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Ingest documents (PDF, DOCX, HTML, Markdown, text, JSONL) into an index, incrementally."""
    from lamina.retrieval.index import Index

    with Index(index, embedder=embedder, store=store) as target, progress_bar("ingest") as bar:
        task = bar.add_task("ingest", total=None)

        def progress(done: int, total: int | None, source: str) -> None:
            bar.update(task, completed=done, total=total)

        summary = target.ingest(
            paths,
            collection=collection,
            include=include or [],
            exclude=exclude or [],
            progress=progress,
        )
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
        return
    typer.echo(
        f"{summary.files} files: {summary.added} added, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {summary.removed} removed; {summary.chunks} chunks; "
        f"{len(summary.skipped)} skipped; {summary.seconds:.1f} s"
    )
    for skipped in summary.skipped:
        # escaped: a file name or a reason may hold [brackets] that rich would eat as markup
        err.print(
            f"[yellow]skipped[/] {escape(skipped.source)}: {escape(skipped.reason)}",
            highlight=False,
        )


@app.command()
@edge
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    index: IndexOpt,
    mode: Annotated[str, typer.Option(help="hybrid, dense or bm25.")] = "hybrid",
    k: Annotated[int, typer.Option("--k", "-k", help="How many results.")] = 5,
    collection: Annotated[str | None, typer.Option(help="Search one collection.")] = None,
    mmr: Annotated[
        float | None, typer.Option(help="Diversify: 0 (most diverse) to 1 (most relevant).")
    ] = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search an index: the best chunks, with source, page, heading path and offsets."""
    from lamina.retrieval.index import Index

    with Index(index, create=False, store=store) as source:
        source.check_searchable(collection)  # an empty index is an error, not zero hits
        hits = source.search(query, k, mode=_mode(mode), collection=collection, mmr_lambda=mmr)
        unfinished = source.unfinished()
    if unfinished:
        err.print(f"[yellow]warning[/] {escape(unfinished)}", highlight=False)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "score": round(h.score, 6),
                        "scores": h.scores,
                        "source": h.chunk.source,
                        "collection": h.chunk.collection,
                        "page": h.chunk.chunk.page,
                        "heading_path": h.chunk.chunk.heading_path,
                        "start": h.chunk.chunk.start,
                        "end": h.chunk.chunk.end,
                        "text": h.text,
                    }
                    for h in hits
                ]
            )
        )
        return
    console = Console()
    for rank, hit in enumerate(hits, start=1):
        chunk = hit.chunk.chunk
        where = hit.chunk.source + (f" p.{chunk.page}" if chunk.page else "")
        heading = " > ".join(chunk.heading_path)
        console.print(  # documents are hostile: their text is never read as markup
            f"[bold]{rank}.[/] {escape(where)} [dim]{escape(heading)} "
            f"\\[{chunk.start}:{chunk.end}] score {hit.score:.3f}[/]",
            highlight=False,
        )
        console.print("   " + " ".join(hit.text.split())[:300], highlight=False, markup=False)


@bench_app.command("beir")
@edge
def bench_beir(
    data: Annotated[Path, typer.Option(help="A BEIR folder: corpus.jsonl, queries.jsonl, qrels/.")],
    split: Annotated[str, typer.Option(help="The qrels split.")] = "test",
    mode: Annotated[str, typer.Option(help="hybrid, dense or bm25.")] = "hybrid",
    embedder: EmbedderOpt = None,
    index: Annotated[
        Path | None, typer.Option(help="Keep the index here (default: a temporary folder).")
    ] = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Ingest a BEIR dataset into a fresh index and report nDCG@10, Recall@100, MRR@10,
    ingest seconds and per-query latency. With --store postgresql://… the index lives in
    PostgreSQL and every search runs inside it."""
    from lamina.evals.beir import run_beir

    with progress_bar("ingest") as bar:
        ingest_task = bar.add_task("ingest", total=None)
        query_task = bar.add_task("queries", total=None, visible=False)

        def on_ingest(done: int, total: int | None, source: str) -> None:
            bar.update(ingest_task, completed=done, total=total)

        def on_query(done: int, total: int) -> None:
            bar.update(query_task, completed=done, total=total, visible=True)

        result = run_beir(
            data,
            split=split,
            mode=_mode(mode),
            embedder=embedder,
            index_dir=index,
            store=store,
            progress=on_ingest,
            query_progress=on_query,
        )
    if as_json:
        typer.echo(json.dumps(result.as_json()))
        return
    table = Table(title=f"BEIR {data.name} ({split}), {result.mode}, {result.store}")
    for column in ("nDCG@10", "Recall@100", "MRR@10", "ingest s", "p50 ms", "p95 ms"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{result.ndcg_10:.4f}",
        f"{result.recall_100:.4f}",
        f"{result.mrr_10:.4f}",
        f"{result.ingest_s:.1f}",
        f"{result.p50_ms:.1f}",
        f"{result.p95_ms:.1f}",
    )
    Console().print(table)
    typer.echo(f"{result.queries} queries, {result.documents} documents, {result.chunks} chunks")
