"""Hostile tool-calling requests to /v1/chat/completions: bad schemas, huge tool lists, unknown
tool choices, forged tool turns. Each is a 400 in OpenAI's error shape that names the problem,
the model is never called, and the model allow-list still holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lamina.models import get_model
from lamina.models.scripted import ScriptedModel
from lamina.server import create_app
from lamina.server.schemas import MAX_SCHEMA_BYTES, MAX_TOOLS
from tests.server.conftest import call, make_settings


def _tool(name: str = "calc", parameters: Any = None, **function: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, **function}
    if parameters is not None:
        spec["parameters"] = parameters
    return {"type": "function", "function": spec}


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


OBJECT = {"type": "object", "properties": {"x": {"type": "string"}}}
USER = [{"role": "user", "content": "hi"}]
CALL = {"id": "c1", "type": "function", "function": {"name": "calc", "arguments": "{}"}}

#: (what is wrong, request body without model, a word the error message must contain)
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("bad type", {"tools": [_tool(parameters={"type": "strnig"})]}, "not a valid JSON Schema"),
    ("schema a list", {"tools": [_tool(parameters=[1, 2])]}, "parameters"),
    ("not an object", {"tools": [_tool(parameters={"type": "string"})]}, "must describe an object"),
    ("bad keyword", {"tools": [_tool(parameters={"minLength": -1})]}, "not a valid JSON Schema"),
    ("remote $ref", {"tools": [_tool(parameters={"$ref": "http://evil/x"})]}, "local references"),
    (
        "deep $ref",
        {"tools": [_tool(parameters={"properties": {"a": {"$ref": "file:///etc/passwd"}}})]},
        "local references",
    ),
    ("too deep", {"tools": [_tool(parameters=_nested(40))]}, "levels deep"),
    (
        "too large",
        {
            "tools": [
                _tool(
                    parameters={
                        "type": "object",
                        "properties": {
                            f"p{i}": {"type": "string", "description": "x" * 100}
                            for i in range(MAX_SCHEMA_BYTES // 100)
                        },
                    }
                )
            ]
        },
        "bytes of JSON",
    ),
    (
        "huge minItems",
        {"tools": [_tool(parameters={"properties": {"a": {"type": "array", "minItems": 10**9}}})]},
        "minItems",
    ),
    ("too many tools", {"tools": [_tool(f"t{i}") for i in range(MAX_TOOLS + 1)]}, "limit"),
    ("duplicate names", {"tools": [_tool("calc"), _tool("calc")]}, "more than once"),
    ("bad name", {"tools": [_tool("rm -rf /")]}, "not a valid tool name"),
    ("long name", {"tools": [_tool("x" * 65)]}, "not a valid tool name"),
    ("long description", {"tools": [_tool(description="d" * 5000)]}, "description"),
    ("not a function tool", {"tools": [{"type": "code_interpreter"}]}, "only function tools"),
    ("no function", {"tools": [{"type": "function"}]}, "only function tools"),
    ("tools not a list", {"tools": {"calc": {}}}, "tools"),
    ("unknown choice", {"tools": [_tool()], "tool_choice": "sometimes"}, "sometimes"),
    (
        "unknown tool named",
        {"tools": [_tool()], "tool_choice": {"type": "function", "function": {"name": "rm"}}},
        "not among the tools offered",
    ),
    (
        "named choice, no tools",
        {"tool_choice": {"type": "function", "function": {"name": "calc"}}},
        "not among the tools offered",
    ),
    ("required, no tools", {"tool_choice": "required"}, "at least one tool"),
    ("choice shape", {"tools": [_tool()], "tool_choice": {"name": "calc"}}, "named tool_choice"),
    ("legacy functions", {"functions": [{"name": "calc"}]}, "deprecated"),
    ("parallel not bool", {"tools": [_tool()], "parallel_tool_calls": "yes"}, "parallel"),
    (
        "tool turn without id",
        {"messages": [*USER, {"role": "tool", "content": "42"}]},
        "tool_call_id",
    ),
    (
        "tool turn for no call",
        {"messages": [*USER, {"role": "tool", "tool_call_id": "forged", "content": "42"}]},
        "no earlier assistant message called",
    ),
    (
        "calls on a user turn",
        {"messages": [{"role": "user", "content": "hi", "tool_calls": [CALL]}]},
        "only assistant messages",
    ),
    (
        "call without function",
        {"messages": [*USER, {"role": "assistant", "tool_calls": [{"id": "c1"}]}]},
        "function",
    ),
]


@pytest.mark.parametrize(("problem", "body", "says"), CASES, ids=[c[0] for c in CASES])
def test_hostile_tool_requests_are_400s(
    tmp_path: Path, problem: str, body: dict[str, Any], says: str
) -> None:
    model = ScriptedModel(["never"])
    app = create_app(make_settings(tmp_path / "home"), models={"lamina": model})
    r = call(
        app, "POST", "/v1/chat/completions", json={"model": "lamina", "messages": USER, **body}
    )
    assert r.status_code == 400, (problem, r.text)
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert says in error["message"], (problem, error["message"])
    assert model.history == []  # refused before the model saw anything


def test_the_model_allow_list_holds_with_tools(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "home"), models={"lamina": ScriptedModel()})
    for model in ("local:/etc/passwd", "openai:gpt-4o@http://evil:1/v1", "scripted:x"):
        body = {"model": model, "messages": USER, "tools": [_tool(parameters=OBJECT)]}
        r = call(app, "POST", "/v1/chat/completions", json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text


@pytest.mark.integration
def test_schemas_the_grammar_cannot_express_are_400s_on_the_real_model(tmp_path: Path) -> None:
    """Valid JSON Schema that llama.cpp's grammar builder refuses: a 400, never a 500 or a
    hang; an absurd but valid bound still gives a schema-valid call."""
    app = create_app(make_settings(tmp_path / "home"), models={"lamina": get_model("local")})
    refused = [
        {"type": "object", "properties": {"node": {"$ref": "#"}}},  # recursive
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "(a+)+"}}},
    ]
    for parameters in refused:
        body = {
            "model": "lamina",
            "messages": USER,
            "tools": [_tool(parameters=parameters)],
            "tool_choice": "required",
            "max_tokens": 8,
        }
        r = call(app, "POST", "/v1/chat/completions", json=body)
        assert r.status_code == 400, r.text
        assert "Cannot build a grammar" in r.json()["error"]["message"]
    huge = {
        "type": "object",
        "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 10**30}},
        "required": ["a"],
    }
    body = {
        "model": "lamina",
        "messages": [{"role": "user", "content": "Pick a number."}],
        "tools": [_tool(parameters=huge)],
        "tool_choice": "required",
        "temperature": 0,
        "max_tokens": 48,
    }
    r = call(app, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    calls = r.json()["choices"][0]["message"]["tool_calls"]
    assert calls[0]["function"]["name"] == "calc"
