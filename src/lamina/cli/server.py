"""``lamina serve``, ``lamina keys`` and ``lamina traces``: the HTTP server's commands."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lamina.cli.app import app, edge, err
from lamina.errors import LaminaError
from lamina.settings import get_settings

keys_app = typer.Typer(help="API keys of `lamina serve` (stored hashed).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command()
@edge
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (server.host).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (server.port).")] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="A model to serve: SPEC, or ID=SPEC to choose the id clients send. Repeatable; "
            "the first is the default (id server.model_id, 'lamina'), the others are served "
            "under their id (the spec itself when no ID= is given).",
        ),
    ] = None,
) -> None:
    """Run the OpenAI-compatible HTTP server until Ctrl-C / SIGTERM (then drain and stop).

    Clients can use only the models given here or configured in [server.models].
    """
    from lamina.server import serve as run_server

    settings = get_settings()
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if model:
        first_id, first_spec = served_model(model[0])
        updates["model"] = first_spec
        if first_id is not None:
            updates["model_id"] = first_id
        extra = dict(settings.server.models)
        for given in model[1:]:
            served_id, spec = served_model(given)
            extra[served_id or spec] = spec
        updates["models"] = extra
    server = settings.server.model_copy(update=updates)
    run_server(settings.model_copy(update={"server": server}))


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def served_model(value: str) -> tuple[str | None, str]:
    """``ID=SPEC`` or ``SPEC`` -> (id or None, spec). An id has no ``:`` or ``/``, so a spec
    holding ``=`` (a URL query, a scripted text) is never mistaken for one.

    >>> served_model("qwen=openai:qwen2.5@http://gpu:8000/v1")
    ('qwen', 'openai:qwen2.5@http://gpu:8000/v1')
    >>> served_model("scripted:a=b")
    (None, 'scripted:a=b')
    """
    name, sep, spec = value.partition("=")
    if sep and spec and _ID.fullmatch(name):
        return name, spec
    return None, value


def _key_store() -> Any:
    from lamina.server.keys import KeyStore

    return KeyStore(get_settings().keys_path)


@keys_app.command("create")
@edge
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key, e.g. the client using it.")],
    rpm: Annotated[
        float | None, typer.Option(help="Requests per minute (default: server setting).")
    ] = None,
    tpm: Annotated[
        float | None, typer.Option(help="Tokens per minute (default: server setting).")
    ] = None,
    admin: Annotated[
        bool, typer.Option(help="May share its document collections with every other key.")
    ] = False,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    key = _key_store().create(name, requests_per_minute=rpm, tokens_per_minute=tpm, admin=admin)
    typer.echo(key)
    err.print("Store this key now: it cannot be shown again.", highlight=False)


@keys_app.command("list")
@edge
def keys_list() -> None:
    """Name, id prefix, creation time and limits of every key (never the keys)."""
    import datetime

    table = Table("name", "id", "created", "rpm", "tpm", "admin")
    for k in _key_store().list_keys():
        created = datetime.datetime.fromtimestamp(k.created).isoformat(timespec="seconds")
        table.add_row(
            k.name,
            k.lookup + "…",
            created,
            str(k.requests_per_minute or "-"),
            str(k.tokens_per_minute or "-"),
            "yes" if k.admin else "",
        )
    Console().print(table)


@keys_app.command("revoke")
@edge
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Delete a key; requests using it get 401 from then on."""
    if not _key_store().revoke(name):
        raise LaminaError(f"No key named {name!r}. `lamina keys list` shows them.")
    typer.echo(f"revoked {name}")


traces_app = typer.Typer(
    help="Spans in the local trace store: every CLI command, Python run, agent run and server "
    "request.",
    invoke_without_command=True,
)
app.add_typer(traces_app, name="traces")


@traces_app.callback()
@edge
def traces(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many of the newest spans.")] = 50,
    trace_id: Annotated[str | None, typer.Option(help="Only this trace.")] = None,
) -> None:
    """Print spans from the local trace store of `lamina serve`, one JSON object a line."""
    from lamina.telemetry.tracing import read_spans

    if ctx.invoked_subcommand is not None:
        return
    for span in read_spans(get_settings().traces_dir, limit=limit, trace_id=trace_id):
        typer.echo(json.dumps(span))


@traces_app.command("list")
@edge
def traces_list(
    limit: Annotated[int, typer.Option(help="How many of the newest traces.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """List recent runs (a command, a request, an agent run), newest last: what ran, when,
    how long, how many spans, tokens and cost. `lamina traces show ID` prints one as a tree."""
    from lamina.telemetry.tracing import read_spans, trace_summaries

    rows = trace_summaries(read_spans(get_settings().traces_dir, limit=100_000))[-limit:]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = Table("started", "ms", "spans", "tokens", "cost", "run")
    table.add_column("trace", no_wrap=True)  # ids are copied into `lamina traces show`
    for row in rows:
        cost = "" if row["cost_usd"] is None else f"${row['cost_usd']:.6f}".rstrip("0").rstrip(".")
        name = f"{row['name']} (error)" if row["error"] else str(row["name"])
        started = str(row["start"])[5:19].replace("T", " ")  # MM-DD hh:mm:ss, UTC
        table.add_row(
            started, f"{row['duration_ms']:.0f}", str(row["spans"]), str(row["tokens"]), cost,
            name, row["trace_id"],
        )  # fmt: skip
    Console().print(table)


@traces_app.command("show")
@edge
def traces_show(trace_id: Annotated[str, typer.Argument(help="The trace id.")]) -> None:
    """Print one trace (an agent run, a request) as a tree of spans."""
    from lamina.telemetry.tracing import read_spans, trace_lines

    spans = read_spans(get_settings().traces_dir, limit=100_000, trace_id=trace_id)
    if not spans:
        raise LaminaError(f"No spans of trace {trace_id!r}; `lamina traces` lists recent ones.")
    for line in trace_lines(spans, width=10_000):
        typer.echo(line)
