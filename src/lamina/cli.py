"""The ``lamina`` command. Errors become messages and exit codes here, nowhere deeper."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from lamina import __version__
from lamina.errors import LaminaError
from lamina.models import backends, get_model
from lamina.models.conversation import Conversation
from lamina.models.pricing import cost_usd
from lamina.settings import get_settings
from lamina.types import ChatOptions, Message

app = typer.Typer(
    help="Lamina: a local-first LLM application stack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cache_app = typer.Typer(help="The on-disk response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
keys_app = typer.Typer(help="API keys of `lamina serve` (stored hashed).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Model spec, e.g. local, openai:gpt-4o-mini.")
]


def _edge(fn: F) -> F:
    """Print a LaminaError as one readable line and exit 1 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LaminaError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lamina {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Lamina: a local-first LLM application stack."""


@app.command()
@_edge
def generate(
    prompt: Annotated[
        str | None, typer.Argument(help="The prompt; read from stdin if absent.")
    ] = None,
    model: ModelOpt = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    temperature: Annotated[float, typer.Option(help="0 is greedy and cacheable.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 0.95,
    top_k: Annotated[int, typer.Option(help="Sample among the k most likely tokens.")] = 40,
    seed: Annotated[int | None, typer.Option(help="Fix the sampling seed.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest completion in tokens.")] = 256,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string; repeatable.")] = None,
    json_schema: Annotated[
        Path | None, typer.Option(help="A JSON Schema file: the output will be JSON matching it.")
    ] = None,
    stream: Annotated[bool, typer.Option(help="Print tokens as they are generated.")] = True,
    usage: Annotated[bool, typer.Option(help="Print token usage and cost to stderr.")] = False,
) -> None:
    """Generate a completion for PROMPT. Only the completion is printed on stdout."""
    text = prompt if prompt is not None and prompt != "-" else sys.stdin.read()
    schema = _read_schema(json_schema) if json_schema else None
    messages = ([Message.system(system)] if system else []) + [Message.user(text)]
    options = ChatOptions(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        max_tokens=max_tokens,
        stop=stop or [],
        json_schema=schema,
    )
    chat_model = get_model(model)
    if stream:
        last = None
        for delta in chat_model.stream(messages, options):
            sys.stdout.write(delta.text)
            sys.stdout.flush()
            last = delta
        sys.stdout.write("\n")
        spent = last.usage if last else None
    else:
        completion = chat_model.chat(messages, options)
        typer.echo(completion.text)
        spent = completion.usage
    if usage and spent:
        err.print(
            f"prompt {spent.prompt_tokens} + completion {spent.completion_tokens} tokens, "
            f"cost {_money(spent.cost_usd)}",
            highlight=False,
        )


def _money(cost: float | None) -> str:
    """Format a cost; prices per token are tiny, so eight decimals.

    >>> _money(3e-07)
    '$0.00000030'
    """
    return "unknown (no price for this model)" if cost is None else f"${cost:.8f}"


def _read_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text())
    except FileNotFoundError:
        raise LaminaError(f"JSON schema file {str(path)!r} does not exist.") from None
    except json.JSONDecodeError as exc:
        raise LaminaError(f"JSON schema file {str(path)!r} is not valid JSON: {exc}.") from None
    if not isinstance(schema, dict):
        raise LaminaError(f"JSON schema file {str(path)!r} must hold a JSON object.")
    return schema


@app.command()
@_edge
def chat(
    model: ModelOpt = None,
    system: Annotated[str | None, typer.Option(help="The system prompt.")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    max_tokens: Annotated[int, typer.Option(help="Longest reply in tokens.")] = 512,
    index: Annotated[
        Path | None,
        typer.Option("--index", "-i", help="Answer from this index, with citations (grounded)."),
    ] = None,
) -> None:
    """Chat interactively. Commands: /reset, /system TEXT, /exit."""
    if index is not None:
        from lamina.cli_rag import grounded_chat

        grounded_chat(index, model)
        return
    talk = Conversation(
        get_model(model), system=system, reply_tokens=max_tokens, temperature=temperature
    )
    interactive = sys.stdin.isatty()
    if interactive:
        err.print(f"Chatting with {talk.model.name}. /reset, /system TEXT, /exit.", highlight=False)
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            talk.reset()
            err.print("(history cleared)")
            continue
        if line.startswith("/system"):
            talk.system = line.removeprefix("/system").strip() or None
            err.print("(system prompt set)" if talk.system else "(system prompt cleared)")
            continue
        dropped = talk.dropped
        for delta in talk.stream(line):
            sys.stdout.write(delta.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        if talk.dropped > dropped:
            err.print(f"(dropped {talk.dropped - dropped} oldest turns to fit the context window)")


@app.command()
@_edge
def tokens(
    text: Annotated[str, typer.Argument(help="The text to tokenize.")],
    model: ModelOpt = None,
    price_as: Annotated[
        str | None, typer.Option(help="Estimate the cost as input to this API model too.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show TEXT's token ids and pieces, the count, and what it would cost as input."""
    chat_model = get_model(model)
    tokenize = getattr(chat_model, "tokenize", None)
    pieces: list[tuple[int, str]] = tokenize(text) if tokenize else []
    count = len(pieces) if tokenize else chat_model.count_tokens(text)
    backend, _, name = chat_model.name.partition(":")
    costs = {chat_model.name: cost_usd(backend, name, count, 0, get_settings().pricing)}
    if price_as:
        costs[price_as] = cost_usd("openai", price_as, count, 0, get_settings().pricing)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": chat_model.name,
                    "count": count,
                    "exact": bool(tokenize),
                    "tokens": [{"id": i, "piece": p} for i, p in pieces],
                    "cost_usd": costs,
                }
            )
        )
        return
    if pieces:
        table = Table("id", "piece", box=None)
        for token_id, piece in pieces:
            table.add_row(str(token_id), repr(piece))
        Console().print(table)
    typer.echo(f"{count} tokens" + ("" if tokenize else " (estimated, ~4 characters per token)"))
    for name, cost in costs.items():
        typer.echo(f"cost as input to {name}: {_money(cost)}")


@app.command()
@_edge
def models() -> None:
    """List the registered model backends and their models."""
    settings = get_settings()
    table = Table("backend", "models")
    for name, factory in sorted(backends().items()):
        try:
            listed = factory.known_models(settings)
        except Exception as exc:  # a broken third-party plugin must not hide the others
            listed = [f"(failed to load: {exc})"]
        table.add_row(name, "\n".join(listed))
    Console().print(table)
    typer.echo(f"default: {settings.model}")


@cache_app.command("stats")
@_edge
def cache_stats() -> None:
    """Hits, misses and entries of the response cache."""
    from lamina.models.cache import ResponseCache

    stats = ResponseCache(get_settings().cache_path).stats()
    typer.echo(json.dumps({"path": str(get_settings().cache_path), **stats}))


@cache_app.command("clear")
@_edge
def cache_clear() -> None:
    """Delete every cached response and reset the counters."""
    from lamina.models.cache import ResponseCache

    ResponseCache(get_settings().cache_path).clear()
    typer.echo("cache cleared")


@app.command()
@_edge
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
@_edge
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
@_edge
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
@_edge
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Delete a key; requests using it get 401 from then on."""
    if not _key_store().revoke(name):
        raise LaminaError(f"No key named {name!r}. `lamina keys list` shows them.")
    typer.echo(f"revoked {name}")


@app.command()
@_edge
def traces(
    limit: Annotated[int, typer.Option(help="How many of the newest spans.")] = 50,
    trace_id: Annotated[str | None, typer.Option(help="Only this trace.")] = None,
) -> None:
    """Print spans from the local trace store of `lamina serve`, one JSON object a line."""
    from lamina.telemetry.tracing import read_spans

    for span in read_spans(get_settings().traces_dir, limit=limit, trace_id=trace_id):
        typer.echo(json.dumps(span))


def main() -> None:
    app()


# The retrieval (ingest, search, bench) and RAG (ask, eval) commands register on `app`.
from lamina import cli_rag, cli_retrieval  # noqa: E402, F401
