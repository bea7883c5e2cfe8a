"""The bundled SmolLM2-135M-Instruct run for real by llama.cpp (short, greedy calls)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import pytest

from lamina import (
    ContextOverflowError,
    IncompleteOutputError,
    InvalidRequestError,
    Message,
    ModelNotFoundError,
)
from lamina.models import get_model
from lamina.models.local import LocalModel, _find_stop, _partial_stop
from lamina.settings import LocalSettings, Settings

pytestmark = pytest.mark.integration

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "age", "languages"],
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    local = LocalModel(settings=Settings(home=tmp_path_factory.mktemp("home"), cache=False))
    local.warm_up()
    return local


def test_answers_a_factual_question(model: LocalModel) -> None:
    result = model.chat("What is the capital of France? Answer in one word.", temperature=0)
    assert "Paris" in result.text
    assert result.finish_reason == "stop"
    assert result.usage.prompt_tokens == model.count_tokens(
        [Message.user("What is the capital of France? Answer in one word.")]
    )
    assert result.usage.completion_tokens > 0
    assert result.usage.cost_usd == 0.0


def test_greedy_is_deterministic_and_stream_matches_chat(model: LocalModel) -> None:
    prompt = "List three fruits."
    first = model.chat(prompt, temperature=0, max_tokens=24)
    second = model.chat(prompt, temperature=0, max_tokens=24)
    streamed = list(model.stream(prompt, temperature=0, max_tokens=24))
    assert first.text == second.text
    assert "".join(d.text for d in streamed) == first.text
    assert streamed[-1].usage == first.usage


def test_seed_makes_sampling_reproducible(model: LocalModel) -> None:
    runs = [model.chat("Write a word.", temperature=1.0, seed=7, max_tokens=12).text for _ in "ab"]
    assert runs[0] == runs[1]


def test_json_schema_output_always_validates(model: LocalModel) -> None:
    for temperature in (0.0, 1.0):
        result = model.chat(
            "Describe a programmer.",
            temperature=temperature,
            seed=3,
            json_schema=PERSON,
            max_tokens=120,
        )
        jsonschema.validate(json.loads(result.text), PERSON)


def test_json_cut_off_by_max_tokens_is_an_error_not_broken_json(model: LocalModel) -> None:
    unbounded = {"type": "object", "properties": {"bio": {"type": "string"}}, "required": ["bio"]}
    with pytest.raises(IncompleteOutputError, match="max_tokens=8") as info:
        model.chat("Describe a programmer.", temperature=0, json_schema=unbounded, max_tokens=8)
    assert info.value.text.startswith("{")


def test_invalid_schema_is_a_clear_error(model: LocalModel) -> None:
    with pytest.raises(InvalidRequestError, match="JSON schema"):
        model.chat("x", json_schema={"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})


def test_greedy_logprobs_pick_the_top_token(model: LocalModel) -> None:
    result = model.chat("Say hello.", temperature=0, max_tokens=6, logprobs=2)
    assert result.logprobs and len(result.logprobs) == result.usage.completion_tokens
    for item in result.logprobs:
        assert item.logprob <= 0.0
        assert max(item.top.values()) == pytest.approx(item.logprob)


def test_stop_strings_end_the_text_before_them(model: LocalModel) -> None:
    full = model.chat("Count from 1 to 10, separated by commas.", temperature=0, max_tokens=40)
    assert "4" in full.text
    cut = model.chat(
        "Count from 1 to 10, separated by commas.", temperature=0, max_tokens=40, stop=["4"]
    )
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index("4")]


def test_max_tokens_finishes_with_length(model: LocalModel) -> None:
    result = model.chat("Tell me a long story about a dragon.", temperature=0, max_tokens=5)
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 5


def test_prompt_larger_than_the_window_is_an_error(tmp_path: Path) -> None:
    small = LocalModel(settings=Settings(home=tmp_path, local=LocalSettings(n_ctx=256)))
    words = "lorem ipsum " * 200
    with pytest.raises(ContextOverflowError) as info:
        small.chat(words)
    assert info.value.context_window == 256 and info.value.prompt_tokens > 256
    ok = small.chat([Message.user(words), Message.user("Hi")], truncate="start", max_tokens=4)
    assert ok.truncated_messages == 1


def test_tokenize_shows_ids_and_pieces(model: LocalModel) -> None:
    assert [piece for _, piece in model.tokenize("Hello world")] == ["Hello", " world"]
    assert model.count_tokens("Hello world") == 2


def test_async_stream(model: LocalModel) -> None:
    async def collect() -> str:
        return "".join(
            [d.text async for d in model.astream("Say hi.", temperature=0, max_tokens=8)]
        )

    assert asyncio.run(collect()) == model.chat("Say hi.", temperature=0, max_tokens=8).text


def test_registry_builds_local_from_a_gguf_path(gguf_path: Path) -> None:
    assert get_model(str(gguf_path)).name == f"local:{gguf_path.stem}"


def test_missing_model_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="No GGUF model file"):
        LocalModel(tmp_path / "missing.gguf", settings=Settings(home=tmp_path)).warm_up()


def test_stop_helpers() -> None:
    assert _find_stop("abc END def", ["END"]) == 4
    assert _find_stop("abc", ["x"]) is None
    assert _partial_stop("abc EN", ["END"]) == 2
    assert _partial_stop("abc", ["END"]) == 0
