"""Serving with the batching engine: pool defaults, no silent retries, a real local-batched run."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import pytest

from lamina.errors import OverloadedError
from lamina.models.registry import register
from lamina.models.scripted import ScriptedModel
from lamina.server.pool import ModelPool
from lamina.settings import ServerSettings, Settings
from tests.server.conftest import call
from tests.server.test_openai_sdk import client, lamina_serve


class SlottedModel(ScriptedModel):
    """A scripted model that says it generates ``slots`` requests at once, as local-batched."""

    def __init__(self, slots: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slots = slots


def test_admission_concurrency_defaults_to_the_models_slots(tmp_path: Any) -> None:
    settings = Settings(home=tmp_path, model="scripted", cache=False)
    pool = ModelPool(settings, {"lamina": SlottedModel(8), "plain": ScriptedModel()})
    assert pool.get("lamina").admission.concurrency == 8
    assert pool.get("plain").admission.concurrency == 1
    explicit = settings.model_copy(update={"server": ServerSettings(concurrency=2)})
    assert ModelPool(explicit, {"lamina": SlottedModel(8)}).default().admission.concurrency == 2


def test_the_local_default_is_served_batched_but_an_explicit_spec_is_kept(tmp_path: Any) -> None:
    assert ModelPool(Settings(home=tmp_path)).default_spec == "local-batched"
    gguf = Settings(home=tmp_path, model="/models/x.gguf")
    assert ModelPool(gguf).default_spec == "local-batched:/models/x.gguf"
    other = Settings(home=tmp_path, model="openai:gpt-4o-mini")
    assert ModelPool(other).default_spec == "openai:gpt-4o-mini"
    explicit = Settings(home=tmp_path, server=ServerSettings(model="local"))
    assert ModelPool(explicit).default_spec == "local"


def test_local_batched_reads_its_knobs_from_settings(tmp_path: Any) -> None:
    from lamina.models.batched import BatchedLocalModel

    settings = Settings(home=tmp_path)
    settings.local.slots, settings.local.prefill_chunk, settings.local.queue_size = 4, 64, 5
    model = BatchedLocalModel.from_spec(None, settings)  # nothing loads before first use
    assert (model.slots, model.slot_ctx, model.prefill_chunk, model.queue_size) == (4, 2048, 64, 5)
    settings.local.slot_ctx = 512
    assert BatchedLocalModel.from_spec(None, settings).slot_ctx == 512


class _Overloaded:
    """A backend whose engine queue is always full; remembers the models it built."""

    built: ClassVar[list[ScriptedModel]] = []

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> ScriptedModel:
        full = OverloadedError("busy", retry_after=2.5)
        model = ScriptedModel([full, full, full, full, full], settings=settings)
        cls.built.append(model)
        return model

    @classmethod
    def known_models(cls, settings: Settings) -> list[str]:
        return []


def test_an_engine_overload_is_a_429_at_once_not_a_silent_retry(tmp_path: Any) -> None:
    from lamina.server import create_app

    register("overloaded-test", _Overloaded)
    settings = Settings(
        home=tmp_path,
        model="scripted",
        cache=False,
        max_retries=4,
        server=ServerSettings(models={"overloaded-test": "overloaded-test"}),
    )
    app = create_app(settings)
    body = {"model": "overloaded-test", "messages": [{"role": "user", "content": "hi"}]}
    started = time.perf_counter()
    response = call(app, "POST", "/v1/chat/completions", json=body)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "OverloadedError"
    (model,) = _Overloaded.built
    assert len(model.history) == 1 and model.settings.max_retries == 0
    assert time.perf_counter() - started < 2  # no backoff slept while holding a slot


@pytest.mark.integration
def test_lamina_serve_local_batched_with_the_sdk() -> None:
    """Chat and stream through the SDK; four streams generate together, not one by one."""
    with lamina_serve("local-batched", env={"LAMINA_CACHE": "false"}) as base:
        sdk = client(base)
        reply = sdk.chat.completions.create(
            model="lamina",
            messages=[{"role": "user", "content": "What is the capital of France? One word."}],
            temperature=0,
            max_tokens=16,
        )
        assert "Paris" in (reply.choices[0].message.content or "")
        stream = sdk.chat.completions.create(
            model="lamina",
            messages=[{"role": "user", "content": "What is the capital of France? One word."}],
            temperature=0,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert "Paris" in text
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

        # Four streams at once: with one request at a time, the first would finish before the
        # last began; batched, every stream has its first token before any has finished.
        start = threading.Barrier(4)
        firsts: list[float] = []
        ends: list[float] = []
        tokens: list[int] = []
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                start.wait(timeout=30)
                first = 0.0
                parts = client(base).chat.completions.create(
                    model="lamina",
                    messages=[{"role": "user", "content": "Write a long story about a dragon."}],
                    temperature=0.7,
                    seed=i,
                    max_tokens=32,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                for chunk in parts:
                    if chunk.choices and chunk.choices[0].delta.content and not first:
                        first = time.monotonic()
                    if chunk.usage is not None:
                        tokens.append(chunk.usage.completion_tokens)
                firsts.append(first)
                ends.append(time.monotonic())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert len(ends) == 4 and min(tokens) >= 16, tokens
        assert max(firsts) < min(ends), (firsts, ends)
