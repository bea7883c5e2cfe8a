"""How a local model calls tools: the prompt that describes them, the grammar that makes every
call parse and validate, and the scanner that turns the generated text into text or a call.

A GGUF chat template knows nothing of tools, so the local backends speak one text protocol
whatever the model (the prompt is ``prompts/tools.j2``)::

    <tool_call>{"name": "calculator", "arguments": {"expression": "12 * 7"}}</tool_call>

Decoding is constrained by a GBNF grammar built from the offered tools: the reply is either one
such call, whose ``arguments`` follow that tool's JSON schema (types, required properties,
enums, string and array lengths, patterns), or, when ``tool_choice="auto"``, plain text that
does not start with ``<``. So the first generated character decides which one it is, and a call
always parses. Numeric bounds (``minimum``/``maximum``) and ``multipleOf`` cannot be expressed
in the grammar: the tool checks those when it validates its arguments.

Tool results go back to the model as a user turn (``Observation from NAME: ...``): small
models trained without a ``tool`` role follow that better (measured in ``docs/agents.md``).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import jinja2

from lamina.errors import IncompleteOutputError, InvalidRequestError
from lamina.types import ChatOptions, Delta, FinishReason, Message, ToolCallDelta, ToolSpec

__all__ = [
    "CALL_CLOSE",
    "CALL_OPEN",
    "OutputScanner",
    "call_id",
    "render_call",
    "render_messages",
    "tool_grammar",
]

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_END = "}" + CALL_CLOSE  # closes the {"name": ..., "arguments": ...} object, then the tag
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
# ^[class]{m,n}$ (or + / *) over plain characters: written as one bounded GBNF class
_SIMPLE_PATTERN = re.compile(r'^\^(\[[^\]\\"]+\])(\{\d+,\d+\}|\+|\*)\$$')
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


# -- the prompt ---------------------------------------------------------------------------------


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # a plain-text prompt
    )
    source = resources.files("lamina.models").joinpath("prompts", "tools.j2")
    return env.from_string(source.read_text(encoding="utf-8"))


def render_call(name: str, arguments: str) -> str:
    """One call in the text protocol.

    >>> render_call("calculator", '{"expression": "1+1"}')
    '<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>'
    """
    return f'{CALL_OPEN}{{"name": {json.dumps(name)}, "arguments": {arguments}}}{CALL_CLOSE}'


def render_messages(messages: Sequence[Message], options: ChatOptions) -> list[Message]:
    """The conversation as plain turns a chat template can render: the offered tools described
    in the system prompt, calls written in the text protocol, results as user turns.

    >>> from lamina.types import ToolCall
    >>> turns = render_messages(
    ...     [Message.user("2+2?"),
    ...      Message.assistant(tool_calls=[ToolCall(id="c1", name="calc", arguments="{}")]),
    ...      Message.tool("4", "c1")], ChatOptions())
    >>> for m in turns[1:]:
    ...     print(m.role, m.content)
    assistant <tool_call>{"name": "calc", "arguments": {}}</tool_call>
    user Observation from calc: 4
    """
    tools = options.offered_tools
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    plain: list[Message] = []
    for message in messages:
        if message.role == "tool":
            name = message.name or names.get(message.tool_call_id or "", "the tool")
            text = f"Observation from {name}: {message.content}"
            if plain and plain[-1].role == "user" and plain[-1].content.startswith("Observation"):
                text = plain.pop().content + "\n" + text  # parallel results: one turn
            plain.append(Message.user(text))
        elif message.tool_calls:
            calls = "".join(render_call(c.name, c.arguments) for c in message.tool_calls)
            text = f"{message.content}\n{calls}" if message.content else calls
            plain.append(Message.assistant(text))
        else:
            plain.append(Message(role=message.role, content=message.content))
    if not tools:
        return plain
    block = (
        _template()
        .render(
            tools=[_describe(t) for t in tools],
            example=_example_call(tools[0]),
            may_answer=not options.must_call,
        )
        .strip()
    )
    if plain and plain[0].role == "system":
        return [Message.system(f"{plain[0].content}\n\n{block}"), *plain[1:]]
    return [Message.system(block), *plain]


def _describe(tool: ToolSpec) -> dict[str, Any]:
    """A tool as the prompt lists it. Arguments by name only: the grammar enforces their
    types, and the bundled 135M model copied a listed type ("string") as its answer."""
    properties = tool.parameters.get("properties", {})
    required = set(tool.parameters.get("required", []))
    arguments = ", ".join(name if name in required else f"{name} (optional)" for name in properties)
    return {
        "name": tool.name,
        "description": " ".join(tool.description.split()),
        "arguments": arguments or "none",
    }


def _example_call(tool: ToolSpec) -> str:
    """A call of ``tool`` with values from its schema's ``examples`` (else placeholders)."""
    values: dict[str, Any] = {}
    properties = tool.parameters.get("properties", {})
    for name in tool.parameters.get("required", list(properties)):
        # Any valid schema may come from an API client: `true`, an empty enum, a list of types.
        schema = properties.get(name)
        schema = schema if isinstance(schema, dict) else {}
        examples, choices, kind = schema.get("examples"), schema.get("enum"), schema.get("type")
        if isinstance(examples, list) and examples:
            values[name] = examples[0]
        elif isinstance(choices, list) and choices:
            values[name] = choices[0]
        else:
            kind = kind[0] if isinstance(kind, list) and kind else kind
            placeholders: dict[Any, Any] = {"integer": 1, "number": 1.5, "boolean": True}
            values[name] = placeholders.get(kind if isinstance(kind, str) else "", "...")
    return render_call(tool.name, json.dumps(values))


# -- the grammar --------------------------------------------------------------------------------


def tool_grammar(options: ChatOptions) -> str | None:
    """GBNF text admitting a call of an offered tool, or (``auto``) plain text; None when no
    tool is offered. Raises InvalidRequestError for a schema llama.cpp cannot turn into rules."""
    tools = options.offered_tools
    if not tools:
        return None
    if options.json_schema is not None:
        raise InvalidRequestError(
            "The local backend cannot constrain one reply to both a JSON schema and tool calls: "
            "pass json_schema or tools, not both."
        )
    converter = _converter()
    alternatives = []
    for i, tool in enumerate(tools):
        try:
            schema = converter.resolve_refs(json.loads(json.dumps(tool.parameters)), f"tool{i}")
            rule = converter.visit(schema, f"tool-{i}-args")
        except Exception as exc:  # llama.cpp's converter raises bare exceptions
            raise InvalidRequestError(
                f"Cannot build a grammar from the parameters schema of tool {tool.name!r} "
                f"({exc!r}). Give it a JSON Schema object, e.g. {{'type': 'object', "
                f"'properties': {{...}}}}."
            ) from exc
        head = f'{CALL_OPEN}{{"name": {json.dumps(tool.name)}, "arguments": '
        alternatives.append(f"{_literal(head)} {rule} {_literal(_END)}")
    rules = converter.format_grammar().replace(_LOOSE_CHAR, _JSON_CHAR)
    call = " | ".join(alternatives)
    if options.must_call:
        root = f"root ::= {call}"
    else:
        # Plain text may not start with "<", so the first character tells text from a call.
        root = f"root ::= {call} | answer\nanswer ::= [^<\\x00] [^\\x00]*"
    return f"{root}\n{rules}"


def _literal(text: str) -> str:
    return json.dumps(text)  # GBNF string literals escape like JSON


def _converter() -> Any:
    from llama_cpp.llama_grammar import PRIMITIVE_RULES, SchemaConverter

    class Converter(SchemaConverter):  # type: ignore[misc]
        """llama-cpp-python's converter, with string lengths as ``char{m,n}``: it spells
        ``maxLength: 2000`` as 2000 nested optional groups, which llama.cpp then refuses."""

        def visit(self, schema: dict[str, Any], name: str) -> str:
            simple = _SIMPLE_PATTERN.match(str(schema.get("pattern", "")))
            if simple and not {"enum", "const", "format"} & schema.keys():
                chars, repeat = simple.groups()
                low = max(int(schema.get("minLength", 0)), 1 if repeat == "+" else 0)
                high = schema.get("maxLength")
                if repeat in ("+", "*"):
                    repeat = f"{{{low},{'' if high is None else int(high)}}}"
                return str(self._add_rule(name, f'"\\"" {chars}{repeat} "\\"" space'))
            lengths = {"minLength", "maxLength"} & schema.keys()
            special = {"enum", "const", "pattern", "format", "$ref"} & schema.keys()
            if schema.get("type") == "string" and lengths and not special:
                char = self._add_primitive("char", PRIMITIVE_RULES["char"])
                low = int(schema.get("minLength", 0))
                high = schema.get("maxLength")
                repeat = f"{char}{{{low},{'' if high is None else int(high)}}}"
                return str(self._add_rule(name, f'"\\"" {repeat} "\\"" space'))
            return str(super().visit(schema, name))

    return Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


# -- reading the output -------------------------------------------------------------------------


def call_id(prompt_tokens: Sequence[int], index: int = 0) -> str:
    """A call id derived from the prompt, so the same request gets the same id on either
    local backend (and from the cache), while each turn of a conversation gets a new one."""
    digest = hashlib.sha256(f"{index}:{','.join(map(str, prompt_tokens))}".encode())
    return f"call_{digest.hexdigest()[:24]}"


class OutputScanner:
    """Generated bytes in, deltas out: text (through a StopScanner) or one tool call.

    With tools offered, output starting with ``<`` is a call (the grammar allows nothing else
    there); stop strings do not apply inside it. The call's id and name go out as soon as the
    name is complete, then its arguments as they are generated; ``push`` returns True once the
    call is closed, so generation stops without waiting for an end token.
    """

    def __init__(self, options: ChatOptions, stops: Any, call_id: str) -> None:
        self.tools = bool(options.offered_tools)
        self.max_tokens = options.max_tokens
        self.text_scanner = stops  # a lamina.models.local.StopScanner
        self.call_id = call_id
        self.mode: str | None = None if self.tools else "text"
        self.raw = b""
        self.call_text = ""
        self.name: str | None = None
        self.arguments: str | None = None  # set when the call is complete
        self._sent_head = False
        self._sent_args = 0
        self._json = json.JSONDecoder()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def called(self) -> bool:
        return self.arguments is not None

    def push(self, piece: bytes) -> bool:
        """Add one token's bytes; True when generation should stop (a stop string or a whole
        call)."""
        if self.mode is None:
            self.raw += piece
            try:
                head = self.raw.decode("utf-8")
            except UnicodeDecodeError:
                return False  # a multi-byte character is not complete yet
            if not head:
                return False
            self.mode = "call" if head.startswith("<") else "text"
            piece, self.raw = self.raw, b""
        if self.mode == "text":
            return bool(self.text_scanner.push(piece))
        self.call_text += self._utf8.decode(piece)
        return self._parse()

    def _parse(self) -> bool:
        text = self.call_text
        if self.name is None:
            prefix = f'{CALL_OPEN}{{"name": '
            rest = text[len(prefix) :]
            marker = ', "arguments": '
            if text.startswith(prefix) and marker in rest:
                self.name = json.loads(rest[: rest.index(marker)])
                self._args_start = len(prefix) + rest.index(marker) + len(marker)
            return False
        if text.endswith(_END):
            candidate = text[self._args_start : -len(_END)].rstrip()
            try:
                self._json.decode(candidate)
            except json.JSONDecodeError:
                return False  # "}</tool_call>" inside a string argument
            self.arguments = candidate
            return True
        return False

    def take(self) -> Delta | None:
        """What became safe to show since the last call, or None."""
        if self.mode == "text":
            text = self.text_scanner.take()
            return Delta(text=text) if text else None
        if self.mode != "call" or self.name is None:
            return None
        pieces = []
        if not self._sent_head:
            pieces.append(ToolCallDelta(index=0, id=self.call_id, name=self.name))
            self._sent_head = True
        args = self.call_text[self._args_start :]
        done = self.arguments is not None
        safe = len(self.arguments or "") if done else len(args) - _held(args)
        if safe > self._sent_args:
            pieces.append(ToolCallDelta(index=0, arguments=args[self._sent_args : safe]))
            self._sent_args = safe
        return Delta(tool_calls=pieces) if pieces else None

    def finish(self, reason: FinishReason) -> tuple[Delta | None, FinishReason]:
        """The rest of the output and the finish reason to report.

        Raises IncompleteOutputError for a call cut off by ``max_tokens``: it cannot parse."""
        if self.mode == "call":
            if not self.called:
                raise IncompleteOutputError(self.call_text, self.max_tokens)
            return self.take(), "tool_calls"
        if self.mode is None:  # nothing decodable yet: whatever bytes there are are text
            self.mode = "text"
            self.text_scanner.push(self.raw)
        rest = self.text_scanner.finish(flush=reason == "length")
        return (Delta(text=rest) if rest else None), reason


def _held(args: str) -> int:
    """Trailing characters of the arguments so far that may belong to the closing ``}</tool_call>``
    (or be the grammar's optional trailing space), held back until they cannot.

    >>> _held('{"a": 1}}</to'), _held('{"a": "x y'), _held('{"a": 1} ')
    (5, 0, 1)
    """
    held = 0
    for n in range(min(len(_END), len(args)), 0, -1):
        if args.endswith(_END[:n]):
            held = n
            break
    body = args[: len(args) - held]
    return held + len(body) - len(body.rstrip(" "))
