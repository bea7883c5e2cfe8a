"""Tool calling on every backend: the types, the local grammar and scanner, the bundled model
(its calls always parse and validate), llama-cpp-python's server as a real OpenAI-compatible
peer, and the OpenAI/Anthropic wire formats against a loopback stub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from lamina import IncompleteOutputError, InvalidRequestError, Message
from lamina.models.anthropic import AnthropicModel
from lamina.models.base import drop_oldest_turns, join_tool_calls
from lamina.models.batched import BatchedLocalModel
from lamina.models.local import LocalModel, StopScanner
from lamina.models.openai import OpenAIModel
from lamina.models.scripted import ScriptedModel, tool_call
from lamina.models.toolcalls import OutputScanner, render_call, render_messages, tool_grammar
from lamina.settings import Settings
from lamina.types import ChatOptions, Completion, ToolCall, ToolSpec
from tests.stub_server import Reply, StubServer

CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression.",
    parameters={
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "pattern": "^[0-9+*/(). -]+$",
                "examples": ["12 * 7"],
            }
        },
        "required": ["expression"],
    },
)
WEATHER = ToolSpec(
    name="weather",
    description="The weather forecast for a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 1, "maxLength": 40},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
            "hourly": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
            "where": {
                "type": "object",
                "properties": {"country": {"type": "string", "maxLength": 30}},
                "required": ["country"],
            },
        },
        "required": ["city", "unit", "where"],
    },
)


# -- types and options --------------------------------------------------------------------------


def test_tool_choice_spellings_and_mismatches() -> None:
    openai_style = {"type": "function", "function": {"name": "calculator"}}
    assert ChatOptions(tools=[CALCULATOR], tool_choice=openai_style).tool_choice == {
        "name": "calculator"
    }
    anthropic_style = {"type": "tool", "name": "calculator"}
    assert ChatOptions(tools=[CALCULATOR], tool_choice=anthropic_style).must_call
    assert ChatOptions(tools=[CALCULATOR], tool_choice="any").tool_choice == "required"
    with pytest.raises(ValueError, match="needs at least one tool"):
        ChatOptions(tool_choice="required")
    with pytest.raises(ValueError, match="'search', which is not among"):
        ChatOptions(tools=[CALCULATOR], tool_choice={"name": "search"})
    with pytest.raises(ValueError, match="unique"):
        ChatOptions(tools=[CALCULATOR, CALCULATOR])
    with pytest.raises(ValueError, match="tool_call_id"):
        Message(role="tool", content="4")
    with pytest.raises(ValueError, match="only assistant"):
        Message(role="user", content="x", tool_calls=[ToolCall(id="c", name="f")])


def test_tools_from_any_object_with_the_three_attributes() -> None:
    class Tool:
        def __init__(self) -> None:
            self.name = "echo"
            self.description = "Say it back."
            self.parameters = {"type": "object", "properties": {"text": {"type": "string"}}}

    assert ChatOptions(tools=[Tool()]).tools[0].name == "echo"


def test_join_tool_calls_and_truncation_keeps_calls_with_results() -> None:
    call = ToolCall(id="c1", name="calculator", arguments='{"expression": "1+1"}')
    turns = [
        Message.system("s"),
        Message.user("q1"),
        Message.assistant(tool_calls=[call]),
        Message.tool("2", "c1"),
        Message.assistant("It is 2."),
        Message.user("q2"),
    ]
    kept, dropped = drop_oldest_turns(turns, lambda m: len(m) <= 3)
    assert [m.role for m in kept] == ["system", "assistant", "user"]
    assert not any(m.role == "tool" for m in kept)  # no result without its call
    assert dropped == 3
    assert join_tool_calls([]) == []


# -- the local protocol: prompt, grammar, scanner -----------------------------------------------


def test_render_messages_describes_tools_and_writes_calls_as_text() -> None:
    call = ToolCall(id="c1", name="calculator", arguments='{"expression": "2+2"}')
    options = ChatOptions(tools=[CALCULATOR], tool_choice="required")
    history = [
        Message.system("Be brief."),
        Message.user("2+2?"),
        Message.assistant(tool_calls=[call]),
        Message.tool("4", "c1"),
    ]
    turns = render_messages(history, options)
    system = turns[0].content
    assert system.startswith("Be brief.")
    assert "- calculator: Evaluate an arithmetic expression. Arguments: expression" in (system)
    assert render_call("calculator", '{"expression": "12 * 7"}') in system  # schema example
    assert "Always reply with a tool call." in system
    assert turns[2].content == render_call("calculator", '{"expression": "2+2"}')
    assert (turns[3].role, turns[3].content) == ("user", "Observation from calculator: 4")
    assert (
        "plain text"
        in render_messages([Message.user("hi")], ChatOptions(tools=[CALCULATOR]))[0].content
    )


def test_grammar_admits_only_offered_tools_and_text_when_auto() -> None:
    auto = tool_grammar(ChatOptions(tools=[CALCULATOR, WEATHER]))
    assert auto is not None and "answer ::= [^<\\x00]" in auto
    assert '\\"name\\": \\"weather\\"' in auto
    named = tool_grammar(ChatOptions(tools=[CALCULATOR, WEATHER], tool_choice={"name": "weather"}))
    assert named is not None and "calculator" not in named and "answer" not in named
    assert tool_grammar(ChatOptions(tools=[CALCULATOR], tool_choice="none")) is None
    # maxLength: 5000 as a bounded repetition, not 5000 nested groups llama.cpp would refuse
    long = ToolSpec(
        name="python",
        parameters={
            "type": "object",
            "properties": {"code": {"type": "string", "maxLength": 5000}},
        },
    )
    grammar = tool_grammar(ChatOptions(tools=[long]))
    assert grammar is not None and "{0,5000}" in grammar
    with pytest.raises(InvalidRequestError, match="json_schema or tools"):
        tool_grammar(ChatOptions(tools=[CALCULATOR], json_schema={"type": "object"}))


def _scan(options: ChatOptions, pieces: list[bytes]) -> tuple[list[str], list[ToolCall], str]:
    scanner = OutputScanner(options, StopScanner(options.stop), "call_x")
    texts: list[str] = []
    deltas = []
    reason = "length"
    for piece in pieces:
        if scanner.push(piece):
            reason = "stop"
            break
        if (delta := scanner.take()) is not None:
            deltas.append(delta)
            texts.append(delta.text)
    rest, finish = scanner.finish(reason)  # type: ignore[arg-type]
    if rest is not None:
        deltas.append(rest)
        texts.append(rest.text)
    return texts, join_tool_calls(p for d in deltas for p in d.tool_calls), finish


def test_scanner_streams_a_call_and_stops_when_it_closes() -> None:
    options = ChatOptions(tools=[CALCULATOR], stop=["7"])  # stop strings do not cut calls
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "1}</tool_call>7"} }'
    pieces = [call[i : i + 3].encode() for i in range(0, len(call), 3)]
    pieces.append(b"</tool_call>")
    pieces.append(b"never read")
    _, calls, finish = _scan(options, pieces)
    assert finish == "tool_calls"
    # "}</tool_call>" inside the string did not end the call; the trailing space is dropped
    assert calls == [
        ToolCall(id="call_x", name="calculator", arguments='{"expression": "1}</tool_call>7"}')
    ]


def test_scanner_passes_text_through_the_stop_scanner() -> None:
    texts, calls, finish = _scan(
        ChatOptions(tools=[CALCULATOR], stop=["END"]), [b"Hel", b"lo E", b"ND more"]
    )
    assert ("".join(texts), calls, finish) == ("Hello ", [], "stop")


def test_scanner_reports_a_call_cut_short() -> None:
    with pytest.raises(IncompleteOutputError):
        _scan(ChatOptions(tools=[CALCULATOR]), [b'<tool_call>{"name": "calculator", "argu'])


# -- the bundled model --------------------------------------------------------------------------


def _settings(home: Path) -> Settings:
    return Settings(home=home, cache=False, max_retries=0)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    return LocalModel(settings=_settings(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchedLocalModel]:
    model = BatchedLocalModel(slots=2, settings=_settings(tmp_path_factory.mktemp("home")))
    yield model
    model.close()


PROMPTS = [
    "What is 1234 * 5678?",
    "What will the weather be in Paris for the next 3 days?",
    "Tell me about Lyon.",
    "Is it cold in Oslo? Use fahrenheit.",
    "hello",
    "Écris-moi la météo de Genève.",
]


@pytest.mark.integration
@pytest.mark.parametrize("choice", ["required", {"name": "weather"}])
def test_local_calls_always_parse_and_validate(local: LocalModel, choice: object) -> None:
    schemas = {t.name: t.parameters for t in (CALCULATOR, WEATHER)}
    for prompt in PROMPTS:
        result = local.chat(
            prompt, tools=[CALCULATOR, WEATHER], tool_choice=choice, temperature=0, max_tokens=200
        )
        assert result.finish_reason == "tool_calls" and result.text == ""
        (call,) = result.tool_calls
        jsonschema.validate(json.loads(call.arguments), schemas[call.name])
        if isinstance(choice, dict):
            assert call.name == "weather"


@pytest.mark.integration
def test_local_sampled_calls_validate_too(local: LocalModel) -> None:
    for seed in range(4):
        result = local.chat(
            PROMPTS[1], tools=[WEATHER], tool_choice="required", temperature=1.0, seed=seed
        )
        jsonschema.validate(json.loads(result.tool_calls[0].arguments), WEATHER.parameters)


@pytest.mark.integration
def test_local_auto_may_answer_in_text(local: LocalModel) -> None:
    result = local.chat("Say hello.", tools=[CALCULATOR], temperature=0, max_tokens=30)
    assert result.tool_calls == [] and result.text and not result.text.startswith("<")
    none = local.chat("2+2?", tools=[CALCULATOR], tool_choice="none", temperature=0, max_tokens=20)
    assert none.tool_calls == []


@pytest.mark.integration
def test_local_stream_matches_chat_and_streams_arguments(local: LocalModel) -> None:
    kwargs = {"tools": [CALCULATOR], "tool_choice": "required", "temperature": 0}
    whole = local.chat(PROMPTS[0], **kwargs)
    deltas = list(local.stream(PROMPTS[0], **kwargs))
    pieces = [p for d in deltas for p in d.tool_calls]
    assert pieces[0].id == whole.tool_calls[0].id and pieces[0].name == "calculator"
    assert len(pieces) > 3  # the arguments came in several pieces
    assert join_tool_calls(pieces) == whole.tool_calls
    assert deltas[-1].finish_reason == "tool_calls"
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens > 0


@pytest.mark.integration
def test_a_call_cut_by_max_tokens_is_an_error_not_broken_json(local: LocalModel) -> None:
    with pytest.raises(IncompleteOutputError):
        local.chat(PROMPTS[1], tools=[WEATHER], tool_choice="required", max_tokens=8)


@pytest.mark.integration
def test_multi_turn_with_a_tool_result(local: LocalModel) -> None:
    first = local.chat(PROMPTS[0], tools=[CALCULATOR], tool_choice="required", temperature=0)
    turns = [
        Message.user(PROMPTS[0]),
        first.message(),
        Message.tool("7006652", first.tool_calls[0].id),
    ]
    assert local.count_request_tokens(turns, ChatOptions(tools=[CALCULATOR])) > local.count_tokens(
        turns
    )
    second = local.chat(turns, tools=[CALCULATOR], temperature=0, max_tokens=40)
    assert second.finish_reason in ("stop", "length", "tool_calls")
    assert second.tool_calls[0].id != first.tool_calls[0].id if second.tool_calls else second.text


def _same(a: Completion, b: Completion) -> bool:
    skip = {"model", "latency_ms"}
    return a.model_dump(exclude=skip) == b.model_dump(exclude=skip)


@pytest.mark.integration
def test_batched_gives_the_same_calls_as_local(
    local: LocalModel, batched: BatchedLocalModel
) -> None:
    for prompt, choice in [(PROMPTS[0], "required"), (PROMPTS[1], "auto"), (PROMPTS[4], "auto")]:
        kwargs = {"tools": [CALCULATOR, WEATHER], "tool_choice": choice, "temperature": 0}
        assert _same(local.chat(prompt, **kwargs), batched.chat(prompt, **kwargs))
    pieces = [
        p
        for d in batched.stream(PROMPTS[0], tools=[CALCULATOR], tool_choice="required")
        for p in d.tool_calls
    ]
    assert join_tool_calls(pieces)[0].name == "calculator"
    with pytest.raises(IncompleteOutputError):
        batched.chat(PROMPTS[1], tools=[WEATHER], tool_choice="required", max_tokens=8)


# -- llama-cpp-python's server: a real OpenAI-compatible peer -----------------------------------


@pytest.mark.integration
def test_openai_backend_against_llama_cpp_server(llama_server: str, settings: Settings) -> None:
    model = OpenAIModel("smollm2", base_url=llama_server, settings=settings)
    # llama-cpp-python's server constrains a named tool_choice with a grammar of its own
    result = model.chat(
        PROMPTS[1], tools=[WEATHER], tool_choice={"name": "weather"}, temperature=0, max_tokens=120
    )
    assert result.finish_reason == "tool_calls"
    (call,) = result.tool_calls
    assert call.name == "weather" and call.id
    jsonschema.validate(json.loads(call.arguments), WEATHER.parameters)
    # the result goes back as a tool turn the server accepts
    turns = [Message.user(PROMPTS[1]), result.message(), Message.tool("Sunny, 21 C.", call.id)]
    follow_up = model.chat(turns, temperature=0, max_tokens=20)
    assert follow_up.finish_reason in ("stop", "length")
    streamed = list(
        model.stream(PROMPTS[1], tools=[WEATHER], tool_choice={"name": "weather"}, max_tokens=120)
    )
    (joined,) = join_tool_calls(p for d in streamed for p in d.tool_calls)
    assert joined.name == "weather"
    jsonschema.validate(json.loads(joined.arguments), WEATHER.parameters)


# -- OpenAI and Anthropic wire formats (loopback stub) ------------------------------------------

OPENAI_CALL = {
    "choices": [
        {
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc",
                        "type": "function",
                        "function": {"name": "calculator", "arguments": '{"expression": "2+2"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 30, "completion_tokens": 9},
}


def test_openai_request_and_response_shapes(settings: Settings) -> None:
    history = [
        Message.user("2+2?"),
        Message.assistant(tool_calls=[ToolCall(id="call_0", name="calculator", arguments="{}")]),
        Message.tool("4", "call_0"),
    ]
    with StubServer() as stub:
        stub.replies.append(Reply(200, OPENAI_CALL))
        model = OpenAIModel("m", base_url=stub.url, settings=settings)
        result = model.chat(
            history,
            tools=[CALCULATOR],
            tool_choice={"name": "calculator"},
            parallel_tool_calls=False,
        )
        body = stub.requests[0].body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "calculator",
                "description": CALCULATOR.description,
                "parameters": CALCULATOR.parameters,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "calculator"}}
    assert body["parallel_tool_calls"] is False
    assert body["messages"][1]["tool_calls"] == [
        {"id": "call_0", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}
    ]
    assert body["messages"][2] == {"role": "tool", "content": "4", "tool_call_id": "call_0"}
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        ToolCall(id="call_abc", name="calculator", arguments='{"expression": "2+2"}')
    ]


def test_openai_streamed_tool_call_deltas(settings: Settings) -> None:
    def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
        return {"choices": [{"delta": delta, "finish_reason": finish}]}

    head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "calculator"}}
    chunks = [
        chunk(
            {
                "role": "assistant",
                "tool_calls": [{**head, "function": {**head["function"], "arguments": ""}}],
            }
        ),  # type: ignore[dict-item]
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"expression": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"2+2"}'}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    ]
    with StubServer() as stub:
        stub.replies.append(Reply(200, sse=chunks))
        deltas = list(OpenAIModel("m", base_url=stub.url, settings=settings).stream("2+2?"))
    assert deltas[-1].finish_reason == "tool_calls"
    assert join_tool_calls(p for d in deltas for p in d.tool_calls) == [
        ToolCall(id="call_1", name="calculator", arguments='{"expression": "2+2"}')
    ]


def _anthropic(url: str, settings: Settings) -> AnthropicModel:
    fast = settings.model_copy(update={"backoff_base_s": 0.01, "cache": False})
    return AnthropicModel("claude-3-5-haiku-latest", api_key="sk-ant", base_url=url, settings=fast)


def test_anthropic_tool_use_and_tool_result_blocks(settings: Settings) -> None:
    reply = {
        "type": "message",
        "content": [
            {"type": "text", "text": "Let me compute."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "calculator",
                "input": {"expression": "2+2"},
            },
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 40, "output_tokens": 12},
    }
    history = [
        Message.system("Be exact."),
        Message.user("2+2? and 3+3?"),
        Message.assistant(
            "Computing.",
            [
                ToolCall(id="toolu_a", name="calculator", arguments='{"expression": "2+2"}'),
                ToolCall(id="toolu_b", name="calculator", arguments='{"expression": "3+3"}'),
            ],
        ),
        Message.tool("4", "toolu_a"),
        Message.tool("6", "toolu_b"),
        Message.user("Now add them."),
    ]
    with StubServer() as stub:
        stub.replies.append(Reply(200, reply))
        result = _anthropic(stub.url, settings).chat(
            history, tools=[CALCULATOR], tool_choice="required", parallel_tool_calls=False
        )
        body = stub.requests[0].body
    assert body["system"] == "Be exact."
    assert body["tools"] == [
        {
            "name": "calculator",
            "description": CALCULATOR.description,
            "input_schema": CALCULATOR.parameters,
        }
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Computing."},
            {
                "type": "tool_use",
                "id": "toolu_a",
                "name": "calculator",
                "input": {"expression": "2+2"},
            },
            {
                "type": "tool_use",
                "id": "toolu_b",
                "name": "calculator",
                "input": {"expression": "3+3"},
            },
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "4"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "6"},
            {"type": "text", "text": "Now add them."},
        ],
    }
    assert result.text == "Let me compute." and result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        ToolCall(id="toolu_1", name="calculator", arguments='{"expression": "2+2"}')
    ]


def test_anthropic_streamed_tool_use(settings: Settings) -> None:
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 20}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Ok."}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_9",
                "name": "calculator",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"expr'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": 'ession": "1"}'},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 7},
        },
        {"type": "message_stop"},
    ]
    with StubServer() as stub:
        stub.replies.append(Reply(200, sse=events))
        deltas = list(_anthropic(stub.url, settings).stream("1?", tools=[CALCULATOR]))
        assert stub.requests[0].body["tool_choice"] == {"type": "auto"}
    assert "".join(d.text for d in deltas) == "Ok."
    assert deltas[-1].finish_reason == "tool_calls"
    assert join_tool_calls(p for d in deltas for p in d.tool_calls) == [
        ToolCall(id="toolu_9", name="calculator", arguments='{"expression": "1"}')
    ]


def test_anthropic_refuses_schema_and_tools_together(settings: Settings) -> None:
    with StubServer() as stub, pytest.raises(InvalidRequestError, match="one of them"):
        _anthropic(stub.url, settings).chat("x", tools=[CALCULATOR], json_schema={"type": "object"})


# -- the scripted model -------------------------------------------------------------------------


def test_scripted_calls_by_turn_stream_and_cache(settings: Settings) -> None:
    def by_turn(messages: list[Message]) -> str | ToolCall:
        if messages[-1].role == "tool":
            return f"The answer is {messages[-1].content}."
        return tool_call("calculator", expression="2+2")

    model = ScriptedModel([by_turn, by_turn], settings=settings)
    first = model.chat("2+2?", tools=[CALCULATOR], temperature=0)
    assert first.finish_reason == "tool_calls"
    assert first.tool_calls == [
        ToolCall(id="call_1", name="calculator", arguments='{"expression": "2+2"}')
    ]
    turns = [Message.user("2+2?"), first.message(), Message.tool("4", "call_1")]
    assert model.chat(turns, tools=[CALCULATOR]).text == "The answer is 4."
    assert model.options[0].tools[0].name == "calculator"
    # a cached deterministic call replays its tool calls, streamed or not
    replay = list(model.stream("2+2?", tools=[CALCULATOR], temperature=0))
    assert join_tool_calls(p for d in replay for p in d.tool_calls) == first.tool_calls
    assert len(model.history) == 2  # served from the cache
    parallel = ScriptedModel([[tool_call("a"), tool_call("b")]], settings=settings)
    streamed = list(parallel.stream("go", tools=[{"name": "a"}, {"name": "b"}]))
    assert [c.name for c in join_tool_calls(p for d in streamed for p in d.tool_calls)] == [
        "a",
        "b",
    ]


def test_unusual_but_valid_tool_schemas_render_and_build_a_grammar_or_a_clear_error() -> None:
    # From an API client: `true` as a property schema, an empty enum, a list of types.
    odd = ToolSpec(
        name="odd",
        description="Odd but valid.",
        parameters={
            "type": "object",
            "properties": {"x": True, "y": {"enum": []}, "z": {"type": ["integer", "null"]}},
            "required": ["x", "y", "z"],
        },
    )
    options = ChatOptions(tools=[odd], tool_choice="required")
    system = render_messages([Message.user("go")], options)[0].content
    assert render_call("odd", json.dumps({"x": "...", "y": "...", "z": 1})) in system
    try:
        assert tool_grammar(options)
    except InvalidRequestError as error:  # llama.cpp's converter may refuse; never a crash
        assert "schema" in str(error).lower()
