"""``lamina generate``, ``chat``, ``tokens``, ``models``, ``cache``: the model layer's commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lamina.cli.app import ModelOpt, app, edge, err, money, repl
from lamina.errors import LaminaError
from lamina.models import backends, get_model
from lamina.models.conversation import Conversation
from lamina.models.pricing import cost_usd
from lamina.settings import get_settings
from lamina.types import ChatOptions, Message

cache_app = typer.Typer(help="The on-disk response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@app.command()
@edge
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
            f"cost {money(spent.cost_usd)}",
            highlight=False,
        )


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
@edge
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
        from lamina.cli.rag import grounded_chat

        grounded_chat(index, model)
        return
    talk = Conversation(
        get_model(model), system=system, reply_tokens=max_tokens, temperature=temperature
    )

    def turn(line: str) -> None:
        dropped = talk.dropped
        for delta in talk.stream(line):
            sys.stdout.write(delta.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        if talk.dropped > dropped:
            err.print(f"(dropped {talk.dropped - dropped} oldest turns to fit the context window)")

    def set_system(text: str) -> None:
        talk.system = text or None
        err.print("(system prompt set)" if talk.system else "(system prompt cleared)")

    repl(
        f"Chatting with {talk.model.name}. /reset, /system TEXT, /exit.",
        turn,
        talk.reset,
        {"system": set_system},
    )


@app.command()
@edge
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
        typer.echo(f"cost as input to {name}: {money(cost)}")


@app.command()
@edge
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
@edge
def cache_stats() -> None:
    """Hits, misses and entries of the response cache."""
    from lamina.models.cache import ResponseCache

    stats = ResponseCache(get_settings().cache_path).stats()
    typer.echo(json.dumps({"path": str(get_settings().cache_path), **stats}))


@cache_app.command("clear")
@edge
def cache_clear() -> None:
    """Delete every cached response and reset the counters."""
    from lamina.models.cache import ResponseCache

    ResponseCache(get_settings().cache_path).clear()
    typer.echo("cache cleared")
