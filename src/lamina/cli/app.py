"""The Typer application and what every command group shares.

Nothing here imports a command module: the groups import this one, and ``lamina.cli``
imports them all, so the import graph has no cycle.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from lamina import __version__
from lamina.errors import LaminaError

__all__ = [
    "ModelOpt",
    "app",
    "edge",
    "err",
    "main",
    "money",
    "out",
    "progress_bar",
    "repl",
]

app = typer.Typer(
    help="Lamina: a local-first LLM application stack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

err = Console(stderr=True, soft_wrap=True)
"""Diagnostics, progress and notes: never mixed into a command's output."""
out = Console(soft_wrap=True, highlight=False)
"""A command's output (stdout)."""

F = TypeVar("F", bound=Callable[..., Any])

ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Model spec, e.g. local, openai:gpt-4o-mini.")
]


def edge(fn: F) -> F:
    """Print a LaminaError as one readable line and exit 1 instead of a traceback; run the
    command inside its root span, so each invocation is one trace."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _traced(fn.__name__):
                return fn(*args, **kwargs)
        except LaminaError as exc:
            # The message is text, not markup: "[1]" or "[server.models]" must show as written.
            err.print(Text("error: ", style="bold red") + Text(str(exc)), highlight=False)
            raise typer.Exit(1) from None
        except ValidationError as exc:
            if exc.title != "Settings":
                raise
            from lamina.settings import describe_invalid

            err.print(Text("error: ", style="bold red") + Text(describe_invalid(exc)))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


#: Commands that are not one run: a server's requests are traces of their own; reading the
#: trace store or the key store should not add to it; doctor checks the configuration (the
#: collector included) rather than using it.
_UNTRACED = ("serve", "traces", "keys", "doctor")


def _command_path(name: str) -> str:
    """``lamina eval rag``: the command line's words, from the running command's context (in
    typer's vendored click or in click), else from the function's name."""
    for module in ("typer._click.globals", "click"):
        try:
            ctx = importlib.import_module(module).get_current_context(silent=True)
        except (ImportError, AttributeError):
            continue
        if ctx is not None:
            words = []  # the root's own name is the program's: "lamina", "python -m lamina"
            while ctx.parent is not None:
                words.append(ctx.info_name or "")
                ctx = ctx.parent
            return " ".join(["lamina", *reversed(words)])
    return "lamina " + name.replace("_", " ")


def _traced(name: str) -> AbstractContextManager[Any]:
    """The root span of this command (``lamina ask``): one trace per invocation."""
    path = _command_path(name)
    if path.split()[1:2] and path.split()[1] in _UNTRACED:
        return nullcontext()
    from lamina.telemetry import spans

    return spans.command(path, sys.argv[1:])


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


def main() -> None:
    app()


def money(cost: float | None) -> str:
    """Format a cost; prices per token are tiny, so eight decimals.

    >>> money(3e-07)
    '$0.00000030'
    """
    return "unknown (no price for this model)" if cost is None else f"${cost:.8f}"


def progress_bar(description: str) -> Progress:
    """A progress bar on stderr: done/total, elapsed and remaining time."""
    return Progress(
        TextColumn(f"[bold]{description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def repl(
    banner: str,
    turn: Callable[[str], None],
    reset: Callable[[], None],
    commands: dict[str, Callable[[str], None]] | None = None,
) -> None:
    """The loop of every interactive chat: read a line, run a turn, until EOF or /exit.

    ``/reset`` calls ``reset``; ``/NAME ARGS`` calls ``commands[NAME](ARGS)``; any other line
    is a turn. The banner and the prompt are shown only on a terminal, so piped input works.
    """
    interactive = sys.stdin.isatty()
    if interactive:
        err.print(banner, highlight=False)
    while True:
        try:
            line = input("> " if interactive else "").strip()
        except EOFError:
            break
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            reset()
            err.print("(history cleared)")
            continue
        name, _, rest = line[1:].partition(" ")
        if line.startswith("/") and commands and name in commands:
            commands[name](rest.strip())
            continue
        turn(line)
