"""The shared machinery, exercised through the scripted model."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from lamina import ChatOptions, ContextOverflowError, InvalidRequestError, Message
from lamina.errors import RateLimitError, TransientError
from lamina.models.scripted import ScriptedModel
from lamina.settings import Settings


def test_chat_returns_text_finish_reason_usage_and_zero_cost(settings: Settings) -> None:
    model = ScriptedModel(["Paris is the capital."], settings=settings)
    result = model.chat([Message.system("Be brief."), Message.user("Capital of France?")])
    assert result.text == "Paris is the capital."
    assert result.finish_reason == "stop"
    assert result.usage.prompt_tokens == 2 + 3 + 2  # words plus one marker per message
    assert result.usage.completion_tokens == 4
    assert result.usage.cost_usd == 0.0
    assert result.model == "scripted:echo"


def test_options_are_validated_with_the_bad_value_named(settings: Settings) -> None:
    model = ScriptedModel(settings=settings)
    with pytest.raises(ValueError, match="temperature"):
        model.chat("hi", temperature=5)
    with pytest.raises(ValueError, match="unknown_option"):
        model.chat("hi", unknown_option=1)
    with pytest.raises(InvalidRequestError, match="empty"):
        model.chat([])


def test_overrides_apply_on_top_of_an_options_object(settings: Settings) -> None:
    model = ScriptedModel(settings=settings)
    model.chat("hi", ChatOptions(temperature=0.2, max_tokens=9), max_tokens=5)
    assert model.options[-1].temperature == 0.2
    assert model.options[-1].max_tokens == 5


def test_overflow_names_both_counts_and_is_never_truncated_silently(settings: Settings) -> None:
    model = ScriptedModel(context_window=10, settings=settings)
    long = " ".join(["word"] * 20)
    with pytest.raises(ContextOverflowError) as info:
        model.chat(long)
    assert info.value.prompt_tokens == 21 and info.value.context_window == 10
    assert "21 tokens" in str(info.value) and "10-token" in str(info.value)
    assert model.history == []  # nothing was sent


def test_explicit_truncation_drops_oldest_turns_and_says_so(settings: Settings) -> None:
    model = ScriptedModel(["ok"], context_window=12, settings=settings)
    history = [
        Message.system("sys"),
        Message.user("one two three"),
        Message.assistant("four five six"),
        Message.user("latest question"),
    ]
    result = model.chat(history, truncate="start", max_tokens=2)
    assert result.truncated_messages == 2
    assert [m.content for m in model.history[0]] == ["sys", "latest question"]


def test_max_tokens_is_clamped_to_what_is_left_of_the_window(settings: Settings) -> None:
    model = ScriptedModel(context_window=10, settings=settings)
    model.chat("a b c", max_tokens=100)
    assert model.options[-1].max_tokens == 10 - 4


def test_deterministic_calls_are_cached_with_hit_and_miss_counts(settings: Settings) -> None:
    model = ScriptedModel(["first", "second"], settings=settings)
    a = model.chat("q", temperature=0)
    b = model.chat("q", temperature=0)
    assert (a.text, a.cached) == ("first", False)
    assert (b.text, b.cached) == ("first", True)
    assert len(model.history) == 1
    stats = model.cache.stats()  # type: ignore[union-attr]
    assert (stats.hits, stats.misses, stats["entries"]) == (1, 1, 1)


def test_sampled_calls_are_not_cached_but_seeded_ones_are(settings: Settings) -> None:
    model = ScriptedModel(["a", "b", "c"], settings=settings)
    assert model.chat("q", temperature=0.8).text == "a"
    assert model.chat("q", temperature=0.8).text == "b"
    assert model.chat("q", temperature=0.8, seed=1).text == "c"
    assert model.chat("q", temperature=0.8, seed=1).cached


def test_two_scripted_models_never_share_cached_answers(settings: Settings) -> None:
    first = ScriptedModel(["from the first script"], settings=settings)
    second = ScriptedModel(["from the second script"], settings=settings)
    assert first.chat("q", temperature=0).text == "from the first script"
    reply = second.chat("q", temperature=0)
    assert (reply.text, reply.cached) == ("from the second script", False)


def test_local_models_are_cached_by_their_weights_file_not_its_name(
    tmp_path: Path, settings: Settings
) -> None:
    from lamina.models.batched import BatchedLocalModel
    from lamina.models.local import LocalModel

    a, b = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for path in (a, b):
        path.parent.mkdir()
        path.write_bytes(b"GGUF v1")
    first, second = LocalModel(a, settings=settings), LocalModel(b, settings=settings)
    assert first.name == second.name  # what users see: both are "local:model"
    assert first.cache_identity != second.cache_identity
    assert BatchedLocalModel(a, settings=settings).cache_identity.endswith(
        first.cache_identity.split("@", 1)[1]
    )
    before = first.cache_identity
    os.utime(a, ns=(0, 10**18))  # an export rewritten in place
    assert first.cache_identity != before


def test_cache_can_be_disabled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = ScriptedModel(["a", "b"], settings=Settings(home=tmp_path, cache=False))
    assert model.chat("q", temperature=0).text == "a"
    assert model.chat("q", temperature=0).text == "b"
    assert model.cache is None


def test_stream_yields_text_then_a_final_delta_with_usage(settings: Settings) -> None:
    model = ScriptedModel(["one two three"], settings=settings)
    deltas = list(model.stream("go"))
    assert "".join(d.text for d in deltas) == "one two three"
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 3


def test_streamed_deterministic_answer_is_cached_whole(settings: Settings) -> None:
    model = ScriptedModel(["one two"], settings=settings)
    list(model.stream("go", temperature=0))
    replay = list(model.stream("go", temperature=0))
    assert len(model.history) == 1
    assert [d.text for d in replay] == ["one two"]
    assert model.chat("go", temperature=0).cached


def test_stop_and_max_tokens(settings: Settings) -> None:
    model = ScriptedModel(["alpha beta. gamma", "a b c d e"], settings=settings)
    assert model.chat("x", stop=".").text == "alpha beta"
    result = model.chat("x", max_tokens=2)
    assert (result.text, result.finish_reason) == ("a b", "length")


def test_transient_failures_are_retried_then_succeed(settings: Settings) -> None:
    model = ScriptedModel(
        [TransientError("boom"), RateLimitError("slow down", retry_after=0.0), "done"],
        settings=settings,
    )
    model.retry = type(model.retry)(max_retries=3, base_s=0.0, max_s=1.0)
    assert model.chat("x").text == "done"
    assert len(model.history) == 3


def test_retries_give_up_after_max_retries(settings: Settings) -> None:
    model = ScriptedModel([TransientError(f"boom {i}") for i in range(5)], settings=settings)
    model.retry = type(model.retry)(max_retries=2, base_s=0.0, max_s=1.0)
    with pytest.raises(TransientError, match="boom 2"):
        model.chat("x")
    assert len(model.history) == 3


def test_non_transient_errors_are_not_retried(settings: Settings) -> None:
    model = ScriptedModel([InvalidRequestError("bad"), "never"], settings=settings)
    with pytest.raises(InvalidRequestError):
        model.chat("x")
    assert len(model.history) == 1


def test_stream_retries_only_before_the_first_delta(settings: Settings) -> None:
    model = ScriptedModel([TransientError("down"), "up now"], settings=settings)
    model.retry = type(model.retry)(max_retries=1, base_s=0.0, max_s=1.0)
    assert "".join(d.text for d in model.stream("x")) == "up now"


def test_rate_limit_setting_throttles_calls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = ScriptedModel(settings=Settings(home=tmp_path, requests_per_minute=60))
    assert model.limiter is not None
    waits: list[float] = []
    model.limiter.acquire(sleep=waits.append)  # the bucket starts full
    assert waits == []


def test_async_chat_and_stream(settings: Settings) -> None:
    model = ScriptedModel(["async one", "async two three"], settings=settings)

    async def run() -> tuple[str, str]:
        first = await model.achat("x")
        parts = [d.text async for d in model.astream("y")]
        return first.text, "".join(parts)

    assert asyncio.run(run()) == ("async one", "async two three")


def test_async_retries(settings: Settings) -> None:
    model = ScriptedModel([TransientError("down"), "up"], settings=settings)
    model.retry = type(model.retry)(max_retries=1, base_s=0.0, max_s=1.0)
    assert asyncio.run(model.achat("x")).text == "up"
