"""What a tool is, and how one call of it runs: validated, time-boxed, its output bounded.

A :class:`Tool` has a name, a description, the JSON schema of its arguments and ``call``.
:class:`FunctionTool` makes one from a typed Python function: the description is the
docstring's first paragraph, each argument's description its line under ``Args:``, the schema
comes from the signature (through pydantic) and arguments are validated before the call::

    @tool
    def add(a: int, b: int = 0) -> str:
        \"\"\"Add two integers.

        Args:
            a: the first number
            b: the second number
        \"\"\"
        return str(a + b)

:func:`run_tool` is how every caller (the agent, ``lamina tools run``) calls a tool. Whatever
the model did wrong — unknown arguments, a tool that raised, ran too long or printed too much —
comes back as a :class:`ToolResult` with ``ok=False`` and an ``error`` the model can read,
never as an exception; only our own bugs raise.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, get_type_hints, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from lamina.tools.errors import ToolError

__all__ = [
    "FunctionTool",
    "Tool",
    "ToolExample",
    "ToolResult",
    "run_tool",
    "tool",
    "truncate",
]


class ToolExample(BaseModel):
    """A worked use of a tool, for few-shot prompts: the request, the arguments, the result
    and the final answer it leads to."""

    model_config = ConfigDict(frozen=True)

    request: str
    arguments: dict[str, Any]
    result: str
    answer: str


@runtime_checkable
class Tool(Protocol):
    """Anything the agent can call. ``call`` raises :class:`~lamina.errors.ToolError` (or any
    exception) for a failure the model should hear about; it returns the observation text."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> dict[str, Any]: ...

    def call(self, arguments: dict[str, Any]) -> str: ...


class ToolResult(BaseModel):
    """One call's outcome. ``output`` is what the model sees (bounded, with a note when cut);
    ``data`` carries structured extras (a search's citations) for the run result."""

    ok: bool
    output: str
    error: str | None = None
    truncated: bool = False
    duration_ms: float = 0.0
    data: Any = None

    @property
    def observation(self) -> str:
        """The text handed back to the model."""
        return self.output if self.ok else f"Error: {self.error}"

    def public(self) -> dict[str, Any]:
        """``{"ok", "output", "error"}``, as ``lamina tools run --json`` prints it."""
        return {"ok": self.ok, "output": self.output, "error": self.error}


class FunctionTool:
    """A tool made from a typed Python function (see the module docstring)."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        examples: list[ToolExample] | None = None,
    ) -> None:
        self.function = function
        self.name = name or function.__name__
        doc = inspect.getdoc(function) or ""
        summary, notes = _parse_docstring(doc)
        self.description = description or summary
        if not self.description:
            raise ToolError(
                f"Tool {self.name!r} has no description: give the function a docstring or "
                f"pass description=."
            )
        self.examples = examples or []
        #: Structured extras of the last call (a search's citations), read by run_tool.
        self.last_data: Any = None
        self.model = _arguments_model(function, self.name, notes)
        self.parameters = _clean_schema(self.model.model_json_schema())

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Checked, converted keyword arguments; ToolError naming each problem otherwise."""
        try:
            parsed = self.model.model_validate(arguments)
        except ValidationError as exc:
            raise ToolError(_describe_errors(self.name, exc)) from None
        return {k: getattr(parsed, k) for k in type(parsed).model_fields}

    def call(self, arguments: dict[str, Any]) -> str:
        result = self.function(**self.validate(arguments))
        return result if isinstance(result, str) else json.dumps(result, default=str)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"


def tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Decorator: ``@tool`` or ``@tool(name=...)`` turns a typed function into a FunctionTool."""
    if function is None:
        return lambda f: FunctionTool(f, name=name, description=description)
    return FunctionTool(function, name=name, description=description)


def run_tool(
    tool: Tool,
    arguments: dict[str, Any] | str,
    *,
    timeout_s: float = 30.0,
    max_chars: int = 4000,
) -> ToolResult:
    """Call ``tool`` once, turning every model-caused failure into an error result.

    ``arguments`` may be the JSON text a model produced. The call runs in a worker thread; past
    ``timeout_s`` the result is a timeout error (a Python thread cannot be killed: the tool
    finishes in the background, so tools that can hang bound themselves too, as the python
    sandbox does with a process). Output over ``max_chars`` is cut with a note saying so.
    """
    started = time.perf_counter()

    def done(ok: bool, output: str, error: str | None = None, data: Any = None) -> ToolResult:
        text, cut = truncate(output, max_chars)
        return ToolResult(
            ok=ok,
            output=text,
            error=error,
            truncated=cut,
            duration_ms=(time.perf_counter() - started) * 1000,
            data=data,
        )

    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            return done(False, "", f"the arguments are not valid JSON ({exc.msg}): {arguments!r}")
    if not isinstance(arguments, dict):
        return done(False, "", f"the arguments must be a JSON object, got {arguments!r}")

    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["output"] = tool.call(arguments)
            box["data"] = getattr(tool, "last_data", None)
        except ToolError as exc:
            box["error"] = str(exc)
        except Exception as exc:  # the tool's failure is the model's observation
            box["error"] = f"{tool.name} raised {type(exc).__name__}: {exc}"

    worker = threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return done(False, "", f"{tool.name} did not finish within {timeout_s:g} s (timed out)")
    if "error" in box:
        message, cut = truncate(box["error"], max_chars)
        result = done(False, "", message)
        return result.model_copy(update={"truncated": cut})
    return done(True, str(box.get("output", "")), data=box.get("data"))


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters with a note saying how much was left out.

    >>> truncate("abcdefghij", 4)
    ('abcd\\n[... output truncated: 6 more characters not shown]', True)
    """
    if len(text) <= limit:
        return text, False
    note = f"[... output truncated: {len(text) - limit} more characters not shown]"
    return f"{text[:limit]}\n{note}", True


# -- helpers --------------------------------------------------------------------------------------

_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(first paragraph, {argument: description}) from a Google-style docstring.

    >>> _parse_docstring("Add numbers.\\n\\nArgs:\\n    a: the first\\n    b (int): the second")
    ('Add numbers.', {'a': 'the first', 'b': 'the second'})
    """
    paragraphs = doc.split("\n\n")
    summary = " ".join(paragraphs[0].split()) if paragraphs and paragraphs[0] else ""
    notes: dict[str, str] = {}
    in_args = False
    current = None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if not in_args:
            continue
        if not stripped or (stripped.endswith(":") and not line.startswith(" ")):
            in_args = False  # a blank line or the next section ends the arguments
            continue
        if match := _ARG_LINE.match(line):
            current = match.group(1).lstrip("*")
            notes[current] = match.group(2).strip()
        elif current:
            notes[current] += " " + stripped
    return summary, notes


def _arguments_model(
    function: Callable[..., Any], name: str, notes: dict[str, str]
) -> type[BaseModel]:
    signature = inspect.signature(function)
    hints = get_type_hints(function, include_extras=True)
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolError(f"Tool {name!r}: *args and **kwargs cannot be described to a model.")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (
            annotation,
            Field(default, description=notes.get(param.name)) if param.name in notes else default,
        )
    model: type[BaseModel] = create_model(
        f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's ``title`` keys: noise in a prompt, and not part of the contract."""
    if isinstance(schema, dict):
        return {
            k: _clean_schema(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_clean_schema(v) for v in schema]
    return schema


def _describe_errors(name: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        given = error.get("input")
        problems.append(f"{where}: {error['msg']} (got {given!r})")
    return f"invalid arguments for {name}: " + "; ".join(problems)
