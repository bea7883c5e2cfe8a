"""``lamina prompts list|show|render``: the prompt templates, the package's and yours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lamina.cli.app import app, edge, err, out
from lamina.errors import InvalidRequestError

prompts_app = typer.Typer(
    help="Prompt templates: built-in ones and yours ($LAMINA_HOME/prompts, --dir).",
    no_args_is_help=True,
)
app.add_typer(prompts_app, name="prompts")

DirOpt = Annotated[
    list[Path] | None,
    typer.Option("--dir", help="A folder of templates, searched before $LAMINA_HOME/prompts."),
]


def _library(dirs: list[Path] | None) -> Any:
    from lamina.prompts import user_library

    library = user_library(folders=dirs or [])
    for problem in library.problems:
        err.print(f"(skipped {problem.path}: {problem.reason})", highlight=False)
    return library


@prompts_app.command("list")
@edge
def list_prompts(
    dirs: DirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Every template: its name, where it comes from and what it is for."""
    library = _library(dirs)
    for template in library:
        if as_json:
            typer.echo(json.dumps(template.describe(), ensure_ascii=False, default=str))
            continue
        origin = "built-in" if template.origin.startswith("builtin:") else template.origin
        out.print(f"{template.name:28} {template.description}  [{origin}]", markup=False)


@prompts_app.command("show")
@edge
def show(
    name: Annotated[str, typer.Argument(help="A template name (rag/answer) or a .j2 file.")],
    dirs: DirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The metadata as JSON.")] = False,
) -> None:
    """A template's metadata (variables, recommended settings) and its body."""
    template = _library(dirs).get(name)
    if as_json:
        typer.echo(json.dumps(template.describe(), ensure_ascii=False, default=str))
        return
    info = template.describe()
    out.print(f"{template.name}: {template.description}", markup=False)
    out.print(f"origin: {info['origin']}", markup=False)
    out.print("variables:", markup=False)
    for key, spec in info["variables"].items():
        default = f" (default {spec['default']!r})" if "default" in spec else ""
        out.print(f"  {key}: {spec['description']}{default}", markup=False)
    if template.settings:
        settings = ", ".join(f"{k}={v!r}" for k, v in template.settings.items())
        out.print(f"settings: {settings}", markup=False)
    out.print("---", markup=False)
    out.print(template.body.rstrip(), markup=False)


@prompts_app.command("render")
@edge
def render(
    name: Annotated[str, typer.Argument(help="A template name or a .j2 file.")],
    var: Annotated[
        list[str] | None,
        typer.Option("--var", "-v", help="NAME=VALUE (VALUE may be JSON: lists, objects)."),
    ] = None,
    variables: Annotated[
        Path | None, typer.Option("--vars", help="A JSON file of variables.")
    ] = None,
    dirs: DirOpt = None,
) -> None:
    """Render a template strictly: a missing or unexpected variable is an error naming it."""
    values: dict[str, Any] = {}
    if variables is not None:
        try:
            loaded = json.loads(variables.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidRequestError(f"No file at {str(variables)!r}.") from None
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{str(variables)!r} is not JSON ({exc.msg}).") from None
        if not isinstance(loaded, dict):
            raise InvalidRequestError(f"{str(variables)!r} must hold a JSON object.")
        values.update(loaded)
    for item in var or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(f"--var takes NAME=VALUE, got {item!r}.")
        try:
            value: Any = json.loads(raw)
            if isinstance(value, int | float | bool) or value is None:
                value = raw  # "3" stays text unless it is a list or an object
        except json.JSONDecodeError:
            value = raw
        values[key.strip()] = value
    out.print(_library(dirs).get(name).render(**values), markup=False)
