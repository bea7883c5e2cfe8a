"""Continuous batching on the bundled SmolLM2-135M-Instruct, checked against LocalModel."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest

from lamina import ContextOverflowError, Message
from lamina.errors import ConfigError, OverloadedError, ProviderError, TransientError
from lamina.models.batched import BatchedLocalModel
from lamina.models.local import LocalModel
from lamina.settings import LocalSettings, Settings
from lamina.types import Completion

pytestmark = pytest.mark.integration

PROMPTS = [
    "What is the capital of France? Answer in one word.",
    "List three fruits.",
    "Write a haiku about rain.",
    "Say hello.",
]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
    },
    "required": ["name", "age"],
}
LONG = "Tell me a very long story about a dragon."


def _settings(home: Path) -> Settings:
    # No cache: every call must really go through the scheduler. No retries: an
    # OverloadedError must reach the test instead of being waited out.
    return Settings(home=home, cache=False, max_retries=0)


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchedLocalModel]:
    model = BatchedLocalModel(slots=8, settings=_settings(tmp_path_factory.mktemp("home")))
    model.warm_up()
    yield model
    model.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    return LocalModel(settings=_settings(tmp_path_factory.mktemp("home")))


@pytest.fixture
def small(tmp_path: Path) -> Iterator[BatchedLocalModel]:
    """One slot and one waiting place: easy to fill."""
    model = BatchedLocalModel(slots=1, queue_size=1, slot_ctx=1024, settings=_settings(tmp_path))
    model.warm_up()
    yield model
    model.close(drain=False, timeout=30)


def _concurrently(calls: list[Callable[[], Completion]]) -> list[Completion]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the scheduler"
        time.sleep(0.01)


def test_concurrent_greedy_outputs_equal_local_model(
    batched: BatchedLocalModel, local: LocalModel
) -> None:
    expected = [local.chat(p, temperature=0, max_tokens=16) for p in PROMPTS]
    # The second round starts from what the slots' caches kept of the first (shared prefixes).
    for _ in range(2):
        calls = [lambda p=p: batched.chat(p, temperature=0, max_tokens=16) for p in PROMPTS]
        results = _concurrently(calls)
        for result, reference in zip(results, expected, strict=True):
            assert result.text == reference.text
            assert result.usage.model_dump() == reference.usage.model_dump()
            assert result.finish_reason == reference.finish_reason
    assert batched.scheduler.load() == (0, 0)


def test_per_request_options_are_honoured_side_by_side(
    batched: BatchedLocalModel, local: LocalModel
) -> None:
    count = "Count from 1 to 10, separated by commas."
    short, cut, structured, seeded, seeded_again = _concurrently(
        [
            lambda: batched.chat(LONG, temperature=0, max_tokens=5),
            lambda: batched.chat(count, temperature=0, max_tokens=40, stop=["4"]),
            lambda: batched.chat("Describe a programmer.", temperature=0.7, seed=3,
                                 json_schema=PERSON, max_tokens=60),
            lambda: batched.chat("Write a word.", temperature=1.0, seed=7, max_tokens=12),
            lambda: batched.chat("Write a word.", temperature=1.0, seed=7, max_tokens=12),
        ]
    )  # fmt: skip
    assert short.finish_reason == "length" and short.usage.completion_tokens == 5
    full = local.chat(count, temperature=0, max_tokens=40).text
    assert cut.finish_reason == "stop" and cut.text == full[: full.index("4")]
    jsonschema.validate(json.loads(structured.text), PERSON)
    assert seeded.text == seeded_again.text
    # Same sampler chain and bit-identical logits: the seeded draw matches LocalModel's too.
    assert seeded.text == local.chat("Write a word.", temperature=1.0, seed=7, max_tokens=12).text


def test_logprobs_and_streaming_match_chat(batched: BatchedLocalModel) -> None:
    result = batched.chat("Say hello.", temperature=0, max_tokens=6, logprobs=2)
    assert result.logprobs and len(result.logprobs) == result.usage.completion_tokens
    for item in result.logprobs:
        assert max(item.top.values()) == pytest.approx(item.logprob)
    deltas = list(batched.stream("Say hello.", temperature=0, max_tokens=6))
    assert "".join(d.text for d in deltas) == result.text
    assert deltas[-1].finish_reason == result.finish_reason


def test_async_api_runs_requests_together(batched: BatchedLocalModel) -> None:
    async def main() -> tuple[list[str], str]:
        chats = [batched.achat(p, temperature=0, max_tokens=16) for p in PROMPTS[:3]]
        streamed = [d.text async for d in batched.astream(PROMPTS[3], temperature=0, max_tokens=16)]
        results = await asyncio.gather(*chats)
        return [r.text for r in results], "".join(streamed)

    texts, streamed = asyncio.run(main())
    expected = [batched.chat(p, temperature=0, max_tokens=16).text for p in PROMPTS]
    assert [*texts, streamed] == expected


def test_cancelled_async_stream_frees_its_slot(small: BatchedLocalModel) -> None:
    async def main() -> None:
        async def consume() -> None:
            async for _ in small.astream(LONG, max_tokens=500):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await asyncio.to_thread(_wait_for, lambda: small.scheduler.load()[0] == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    _wait_for(lambda: small.scheduler.load() == (0, 0))
    assert small.chat("Say hi.", temperature=0, max_tokens=4).usage.completion_tokens > 0


def test_full_queue_is_overloaded_and_a_closed_stream_frees_its_slot(
    small: BatchedLocalModel,
) -> None:
    running = small.stream(LONG, temperature=0, max_tokens=500)
    next(running)  # admitted and generating: the only slot is taken
    waiting: list[Completion] = []
    thread = threading.Thread(
        target=lambda: waiting.append(small.chat("Say hi.", temperature=0, max_tokens=4))
    )
    thread.start()
    _wait_for(lambda: small.scheduler.load() == (1, 1))
    with pytest.raises(OverloadedError) as info:
        small.chat("One too many.", max_tokens=4)
    assert info.value.retry_after is not None and info.value.retry_after > 0
    running.close()  # the consumer leaves: the slot goes to the waiting request
    thread.join(timeout=30)
    assert waiting and waiting[0].usage.completion_tokens > 0
    assert small.scheduler.load() == (0, 0)


def test_timeout_ends_a_request_that_runs_too_long(tmp_path: Path) -> None:
    model = BatchedLocalModel(slots=1, timeout_s=0.3, settings=_settings(tmp_path))
    try:
        running = model.stream(LONG, temperature=0, max_tokens=500)
        with pytest.raises(TransientError, match="in time"):
            next(running)
            for _ in running:
                pass
    finally:
        model.close(drain=False, timeout=30)


def test_close_drains_in_flight_requests_then_refuses_new_ones(tmp_path: Path) -> None:
    model = BatchedLocalModel(slots=2, settings=_settings(tmp_path))
    model.warm_up()
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(model.chat, p, temperature=0, max_tokens=8) for p in PROMPTS[:3]]
        _wait_for(lambda: sum(model.scheduler.load()) == 3)
        model.close()
        results = [f.result(timeout=30) for f in futures]
    assert all(r.finish_reason in ("stop", "length") and r.text for r in results)
    with pytest.raises(ProviderError, match="shutting down"):
        model.chat("Say hi.", max_tokens=4)


def test_context_window_is_the_slots_share(tmp_path: Path) -> None:
    model = BatchedLocalModel(
        slots=4, settings=Settings(home=tmp_path, local=LocalSettings(n_ctx=1024))
    )
    assert model.context_window == 256
    with pytest.raises(ContextOverflowError) as info:
        model.chat("lorem ipsum " * 200)
    assert info.value.context_window == 256
    ok = model.chat([Message.user("lorem ipsum " * 200), Message.user("Hi")], truncate="start",
                    max_tokens=4)  # fmt: skip
    assert ok.truncated_messages == 1
    model.close()


def test_batched_format_serves_a_cached_conversion(tmp_path: Path) -> None:
    from lamina.models.local import bundled_model_path

    settings = Settings(
        home=tmp_path, cache=False, local=LocalSettings(n_ctx=1024, batched_format="q8_0")
    )
    model = BatchedLocalModel(slots=2, settings=settings)
    try:
        served = model.path
        assert served.parent == tmp_path / "models" and served.name.endswith("-q8_0.gguf")
        assert served.stat().st_size > bundled_model_path().stat().st_size  # 8 bits > 4 bits
        reply = model.chat("What is the capital of France?", temperature=0, max_tokens=8)
        assert reply.text and reply.finish_reason in ("stop", "length")
    finally:
        model.close()
    again = BatchedLocalModel(slots=2, settings=settings)
    assert again.path == served  # converted once, then found
    wrong = BatchedLocalModel(
        settings=Settings(home=tmp_path, local=LocalSettings(batched_format="q3_z"))
    )
    with pytest.raises(ConfigError, match=r"local\.batched_format is 'q3_z'.*q8_0"):
        _ = wrong.path
