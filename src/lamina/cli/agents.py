"""``lamina agent``, ``lamina crew`` and ``lamina tools``: agents and their tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lamina.cli.app import ModelOpt, app, edge, err, out

tools_app = typer.Typer(help="Tools agents can call (built-in and plugins).", no_args_is_help=True)
app.add_typer(tools_app, name="tools")

DEFAULT_TOOLS = "calculator"

IndexOpt = Annotated[
    Path | None,
    typer.Option("--index", help="An index directory (lamina ingest) for search_documents."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _context(index: Path | None) -> Any:
    from lamina.settings import get_settings
    from lamina.tools import ToolContext

    return ToolContext(settings=get_settings(), index=index)


def _show(step: Any) -> None:
    """Stream a step to stderr as it happens."""
    who = f"[{step.role}] " if step.role and step.role != "agent" else ""
    if step.kind == "handoff":
        err.print(f"[bold]⇢ {step.tool}[/]: {step.observation}", highlight=False)
    elif step.kind == "critic":
        err.print(f"{who}[bold]✓ review[/]: {step.observation}", highlight=False)
    elif step.kind == "answer":
        err.print(f"{who}[bold]= answer[/]", highlight=False)
    else:
        arguments = json.dumps(step.arguments, ensure_ascii=False)
        mark = "→" if step.kind == "tool" else "!"
        err.print(f"{who}[bold]{mark} {step.tool}[/] {arguments}", highlight=False)
        err.print(f"  ← {_clip(step.observation)}", highlight=False)


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app.command()
@edge
def agent(
    task: Annotated[str, typer.Argument(help="What the agent should do.")],
    tools: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated tool names (default: {DEFAULT_TOOLS}, plus "
            f"search_documents with --index). `lamina tools list` shows them."
        ),
    ] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    max_steps: Annotated[int | None, typer.Option(help="Model calls before it stops.")] = None,
    session: Annotated[
        str | None, typer.Option(help="Remember the conversation under this name; resume it.")
    ] = None,
    critic: Annotated[
        bool, typer.Option(help="Check the answer against the observations; revise once.")
    ] = False,
    answer: Annotated[
        str, typer.Option(help="'tool': answer through a final_answer tool; 'text': plain text.")
    ] = "tool",
    as_json: JsonOpt = False,
) -> None:
    """Run a ReAct agent on TASK: it calls tools until it can answer. Steps stream to stderr;
    the answer goes to stdout (--json: answer, stop_reason, steps, usage)."""
    from lamina.agents import Agent, AgentConfig, SessionStore
    from lamina.errors import ConfigError
    from lamina.models import get_model
    from lamina.settings import get_settings
    from lamina.tools import get_tools

    if answer not in ("tool", "text"):
        raise ConfigError(f"--answer must be 'tool' or 'text', not {answer!r}.")
    settings = get_settings()
    names = tools if tools is not None else DEFAULT_TOOLS + (",search_documents" if index else "")
    context = _context(index)
    chosen = get_tools(names.split(","), context)
    config = AgentConfig.from_settings(
        settings.agents, max_steps=max_steps, critic=critic, answer=answer
    )
    sessions = SessionStore(settings.home / "agents.sqlite") if session else None
    runner = Agent(
        get_model(model),
        chosen,
        config=config,
        sessions=sessions,
        settings=settings,
        on_step=None if as_json else _show,
    )
    result = runner.run(task, session=session)
    if as_json:
        out.print_json(json.dumps(result.public()))
        return
    if result.answer is not None:
        out.print(result.answer, markup=False)
    else:
        out.print(f"(no answer: {result.stop_reason})", markup=False)
    usage = result.usage
    err.print(
        f"stop: {result.stop_reason}{f' ({result.detail})' if result.detail else ''}; "
        f"{len(result.tool_steps())} tool calls, {result.model_calls} model calls, "
        f"{usage.total_tokens} tokens, {result.seconds:.1f} s; trace {result.trace_id}",
        highlight=False,
    )


@app.command()
@edge
def crew(
    task: Annotated[str, typer.Argument(help="What the crew should do.")],
    roles: Annotated[
        str,
        typer.Option(
            help="Comma-separated roles: presets researcher, coder, analyst, writer, "
            "reviewer, or NAME:TOOL1+TOOL2."
        ),
    ] = "coder,reviewer",
    index: IndexOpt = None,
    model: ModelOpt = None,
    max_rounds: Annotated[int, typer.Option(help="Hand-offs before it stops.")] = 4,
    routing: Annotated[
        str, typer.Option(help="'supervisor' (the model routes) or 'sequential'.")
    ] = "supervisor",
    as_json: JsonOpt = False,
) -> None:
    """Run a crew of agents on TASK: a supervisor hands work to roles, a reviewer may send it
    back, for at most --max-rounds rounds."""
    from lamina.agents.crew import Crew, roles_from_spec
    from lamina.errors import ConfigError
    from lamina.models import get_model
    from lamina.settings import get_settings

    if routing not in ("supervisor", "sequential"):
        raise ConfigError(f"--routing must be 'supervisor' or 'sequential', not {routing!r}.")
    settings = get_settings()
    team = Crew(
        get_model(model),
        roles_from_spec(roles, _context(index)),
        max_rounds=max_rounds,
        routing=routing,  # type: ignore[arg-type]
        settings=settings,
        on_step=None if as_json else _show,
    )
    result = team.run(task)
    if as_json:
        payload = result.public()
        payload["steps"] = [{**s.public(), "role": s.role, "kind": s.kind} for s in result.steps]
        out.print_json(json.dumps(payload))
        return
    out.print(result.answer or f"(no answer: {result.stop_reason})", markup=False)
    err.print(
        f"stop: {result.stop_reason}; {result.model_calls} model calls, "
        f"{result.usage.total_tokens} tokens, {result.seconds:.1f} s; trace {result.trace_id}",
        highlight=False,
    )


@tools_app.command("list")
@edge
def tools_list(as_json: JsonOpt = False) -> None:
    """Every registered tool with its description and arguments."""
    from lamina.tools import available, get_tool

    context = _context(None)
    rows: list[dict[str, Any]] = []
    for name in available():
        tool = get_tool(name, context)
        rows.append({"name": name, "description": tool.description, "parameters": tool.parameters})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for row in rows:
        arguments = ", ".join(row["parameters"].get("properties", {}))
        out.print(f"[bold]{row['name']}[/]({arguments})")
        out.print(f"  {row['description']}", markup=False)


@tools_app.command("run")
@edge
def tools_run(
    name: Annotated[str, typer.Argument(help="The tool's name.")],
    args: Annotated[str, typer.Option("--args", help="The arguments as a JSON object.")] = "{}",
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Call one tool directly, as an agent would (validation, limits, truncation).
    --json prints {"ok", "output", "error"}; otherwise the output, or the error and exit 1."""
    from lamina.settings import get_settings
    from lamina.tools import get_tool, run_tool

    settings = get_settings()
    tool = get_tool(name, _context(index))
    result = run_tool(
        tool, args, timeout_s=settings.tools.timeout_s, max_chars=settings.tools.max_output_chars
    )
    if as_json:
        out.print_json(json.dumps(result.public()))
        return
    if not result.ok:
        err.print(f"[bold red]error:[/] {result.error}", highlight=False)
        raise typer.Exit(1)
    out.print(result.output, markup=False)
