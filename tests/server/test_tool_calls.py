"""Tool calling over /v1/chat/completions, in OpenAI's wire format.

The shape of replies and streamed pieces is checked with the scripted model (in process); the
real thing runs the bundled model behind a real ``lamina serve``, driven by the official
``openai`` SDK (plain, streamed and with its stream helper), LangChain's ``ChatOpenAI.bind_tools``
and smolagents' ``ToolCallingAgent``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from lamina.models.scripted import ScriptedModel, tool_call
from lamina.server import create_app
from lamina.tools import get_tool
from lamina.types import Message
from tests.server.conftest import call, make_settings
from tests.server.test_openai_sdk import lamina_serve

CALCULATOR = get_tool("calculator")
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": CALCULATOR.name,
            "description": CALCULATOR.description,
            "parameters": CALCULATOR.parameters,
        },
    }
]
ASK = [{"role": "user", "content": "What is 12 * 7? Use the calculator."}]


def _app(tmp_path: Path, model: ScriptedModel) -> Any:
    return create_app(make_settings(tmp_path / "home"), models={"lamina": model})


def _events(body: str) -> list[dict[str, Any]]:
    lines = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_a_call_comes_back_as_message_tool_calls(tmp_path: Path) -> None:
    model = ScriptedModel([tool_call("calculator", expression="12 * 7")])
    r = call(
        _app(tmp_path, model),
        "POST",
        "/v1/chat/completions",
        json={"model": "lamina", "messages": ASK, "tools": TOOLS, "parallel_tool_calls": False},
    )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "12 * 7"}'},
            }
        ],
    }
    options = model.options[-1]
    assert [t.name for t in options.tools] == ["calculator"]
    assert options.tools[0].parameters == CALCULATOR.parameters
    assert options.tool_choice == "auto" and options.parallel_tool_calls is False


def test_streamed_calls_arrive_as_openai_pieces(tmp_path: Path) -> None:
    calls = [tool_call("calculator", expression="1+1"), tool_call("calculator", expression="2")]
    model = ScriptedModel([calls])
    r = call(
        _app(tmp_path, model),
        "POST",
        "/v1/chat/completions",
        json={"model": "lamina", "messages": ASK, "tools": TOOLS, "stream": True},
    )
    chunks = _events(r.text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [p for c in chunks for p in c["choices"][0]["delta"].get("tool_calls", [])]
    # the first piece of each call: index, id, type, name and empty arguments; then fragments
    assert pieces == [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "calculator", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"expression": "1+1"}'}},
        {
            "index": 1,
            "id": "call_2",
            "type": "function",
            "function": {"name": "calculator", "arguments": ""},
        },
        {"index": 1, "function": {"arguments": '{"expression": "2"}'}},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_conversation_with_calls_and_results_reaches_the_model(tmp_path: Path) -> None:
    model = ScriptedModel(["It is 84."])
    messages = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "12 * 7"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "84"},
    ]
    r = call(
        _app(tmp_path, model),
        "POST",
        "/v1/chat/completions",
        json={
            "model": "lamina",
            "messages": messages,
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "calculator"}},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"] == {"role": "assistant", "content": "It is 84."}
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    seen = model.history[-1]
    assert seen[1] == Message.assistant(
        tool_calls=[tool_call("calculator", id="call_a", expression="12 * 7")]
    )
    assert seen[2] == Message.tool("84", "call_a")
    assert model.options[-1].tool_choice == {"name": "calculator"}


def test_tool_choice_none_offers_no_tools(tmp_path: Path) -> None:
    model = ScriptedModel(["no tools"])
    body = {"model": "lamina", "messages": ASK, "tools": TOOLS, "tool_choice": "none"}
    r = call(_app(tmp_path, model), "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "no tools"
    assert model.options[-1].offered_tools == []


def _sdk(base: str) -> openai.OpenAI:
    # the bundled model on a busy 2-core machine: a first call with a grammar takes a while
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.mark.integration
@pytest.mark.timeout(900)  # about a minute on a quiet machine
def test_openai_sdk_and_langchain_call_tools_on_the_real_local_model() -> None:
    from langchain_core.messages import AIMessageChunk
    from langchain_openai import ChatOpenAI

    schema = CALCULATOR.parameters
    with lamina_serve("local") as base:
        sdk = _sdk(base)
        reply = sdk.chat.completions.create(
            model="lamina",
            messages=ASK,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice="required",
            temperature=0,
            max_tokens=64,
        )
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls"
        calls = choice.message.tool_calls or []
        assert len(calls) == 1 and calls[0].type == "function"
        assert calls[0].function.name == "calculator"
        arguments = json.loads(calls[0].function.arguments)
        jsonschema.validate(arguments, schema)

        # the result goes back as a tool message; the model may answer (auto) or call again
        after = sdk.chat.completions.create(
            model="lamina",
            messages=[
                *ASK,
                choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": calls[0].id, "content": "84"},
            ],  # type: ignore[list-item]
            tools=TOOLS,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=48,
        )
        final = after.choices[0]
        assert final.finish_reason in ("stop", "length", "tool_calls")
        if final.finish_reason == "tool_calls":
            for again in final.message.tool_calls or []:
                jsonschema.validate(json.loads(again.function.arguments), schema)
        else:
            assert final.message.content

        # streamed, with a named choice: pieces exactly as OpenAI sends them
        stream = sdk.chat.completions.create(
            model="lamina",
            messages=ASK,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice={"type": "function", "function": {"name": "calculator"}},
            temperature=0,
            max_tokens=64,
            stream=True,
        )
        chunks = [c for c in stream if c.choices]
        pieces = [p for c in chunks for p in c.choices[0].delta.tool_calls or []]
        assert pieces[0].index == 0 and pieces[0].id and pieces[0].type == "function"
        assert pieces[0].function is not None and pieces[0].function.name == "calculator"
        assert all(p.id is None and p.index == 0 for p in pieces[1:])
        joined = "".join((p.function.arguments or "") for p in pieces if p.function)
        assert json.loads(joined) == arguments  # greedy: the same call as unstreamed
        assert chunks[-1].choices[0].finish_reason == "tool_calls"

        # the SDK's own stream accumulator builds the same call
        with sdk.chat.completions.stream(
            model="lamina",
            messages=ASK,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice="required",
            temperature=0,
            max_tokens=64,
        ) as helper:
            completed = helper.get_final_completion()
        built = completed.choices[0].message.tool_calls or []
        assert [(c.function.name, json.loads(c.function.arguments)) for c in built] == [
            ("calculator", arguments)
        ]

        # LangChain, unchanged: bind_tools with a Python function, invoked and streamed
        def calculator(expression: str) -> str:
            """Evaluate an arithmetic expression such as "12 * 7"."""
            return expression

        llm = ChatOpenAI(
            model="lamina",
            base_url=f"{base}/v1",
            api_key="unused",  # type: ignore[arg-type]
            temperature=0,
            max_tokens=64,  # type: ignore[call-arg]
            max_retries=0,
            timeout=300,
        )
        bound = llm.bind_tools([calculator], tool_choice="calculator")
        message = bound.invoke("What is 12 * 7? Use the calculator.")
        assert [c["name"] for c in message.tool_calls] == ["calculator"]  # type: ignore[attr-defined]
        assert isinstance(message.tool_calls[0]["args"]["expression"], str)  # type: ignore[attr-defined]
        total: AIMessageChunk | None = None
        for chunk in bound.stream("What is 12 * 7? Use the calculator."):
            assert isinstance(chunk, AIMessageChunk)
            total = chunk if total is None else total + chunk
        assert total is not None and [c["name"] for c in total.tool_calls] == ["calculator"]
        assert total.tool_calls[0]["args"] == message.tool_calls[0]["args"]  # type: ignore[attr-defined]


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_smolagents_tool_calling_agent_runs_on_lamina_serve() -> None:
    from smolagents import OpenAIServerModel, ToolCallingAgent, tool

    @tool
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression.

        Args:
            expression: the arithmetic to evaluate, e.g. "12 * 7".
        """
        return CALCULATOR.call({"expression": expression})

    with lamina_serve("local") as base:
        model = OpenAIServerModel(
            model_id="lamina",
            api_base=f"{base}/v1",
            api_key="unused",
            temperature=0,
            max_tokens=96,
            client_kwargs={"timeout": 300, "max_retries": 0},
        )
        agent = ToolCallingAgent(tools=[calculator], model=model, max_steps=1, verbosity_level=0)
        agent.run("What is 12 * 7? Use the calculator.")
        actions = [s for s in agent.memory.steps if getattr(s, "tool_calls", None)]
        assert actions, "smolagents made no tool call through the server"
        first = actions[0].tool_calls[0]  # type: ignore[attr-defined]
        assert first.name in ("calculator", "final_answer")
        assert isinstance(first.arguments, dict)  # it parsed our JSON arguments
        # smolagents' own parse errors would show here; a grammar-constrained call has none
        assert all(
            "parse" not in str(getattr(s, "error", "") or "").lower() for s in agent.memory.steps
        )
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
