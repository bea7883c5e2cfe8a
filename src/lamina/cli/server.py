"""``lamina serve``, ``lamina keys`` and ``lamina traces``: the HTTP server's commands."""

from __future__ import annotations

import json
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
            "--model", "-m", help="Model spec to serve; repeatable, the first is the default."
        ),
    ] = None,
) -> None:
    """Run the OpenAI-compatible HTTP server until Ctrl-C / SIGTERM (then drain and stop)."""
    from lamina.server import serve as run_server

    settings = get_settings()
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if model:
        updates["model"] = model[0]
        updates["models"] = list(dict.fromkeys([*model[1:], *settings.server.models]))
    server = settings.server.model_copy(update=updates)
    run_server(settings.model_copy(update={"server": server}))


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
) -> None:
    """Create a key and print it once; only its hash is stored."""
    key = _key_store().create(name, requests_per_minute=rpm, tokens_per_minute=tpm)
    typer.echo(key)
    err.print("Store this key now: it cannot be shown again.", highlight=False)


@keys_app.command("list")
@edge
def keys_list() -> None:
    """Name, id prefix, creation time and limits of every key (never the keys)."""
    import datetime

    table = Table("name", "id", "created", "rpm", "tpm")
    for k in _key_store().list_keys():
        created = datetime.datetime.fromtimestamp(k.created).isoformat(timespec="seconds")
        table.add_row(
            k.name,
            k.lookup + "…",
            created,
            str(k.requests_per_minute or "-"),
            str(k.tokens_per_minute or "-"),
        )
    Console().print(table)


@keys_app.command("revoke")
@edge
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Delete a key; requests using it get 401 from then on."""
    if not _key_store().revoke(name):
        raise LaminaError(f"No key named {name!r}. `lamina keys list` shows them.")
    typer.echo(f"revoked {name}")


@app.command()
@edge
def traces(
    limit: Annotated[int, typer.Option(help="How many of the newest spans.")] = 50,
    trace_id: Annotated[str | None, typer.Option(help="Only this trace.")] = None,
) -> None:
    """Print spans from the local trace store of `lamina serve`, one JSON object a line."""
    from lamina.telemetry.tracing import read_spans

    for span in read_spans(get_settings().traces_dir, limit=limit, trace_id=trace_id):
        typer.echo(json.dumps(span))
