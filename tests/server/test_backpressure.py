"""Back-pressure, disconnects, timeouts and draining, against slow scripted models."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from lamina.errors import OverloadedError
from lamina.server.limits import Admission
from tests.server.conftest import SlowModel

WORDS = " ".join(f"w{i}" for i in range(200))


def chat(content: str = "a b c", **extra: Any) -> dict[str, Any]:
    return {"model": "lamina", "messages": [{"role": "user", "content": content}], **extra}


def test_admission_refuses_when_queue_full() -> None:
    async def scenario() -> list[str]:
        gate = Admission(concurrency=1, queue_size=1)
        outcomes: list[str] = []

        async def one() -> None:
            try:
                async with gate.slot():
                    await asyncio.sleep(0.05)
                outcomes.append("ok")
            except OverloadedError as exc:
                assert exc.retry_after and exc.retry_after >= 1
                outcomes.append("refused")

        await asyncio.gather(one(), one(), one())
        return sorted(outcomes)

    assert asyncio.run(scenario()) == ["ok", "ok", "refused"]


def test_overload_gives_only_200_or_429_and_finishes(make_app: Any) -> None:
    app = make_app({"lamina": SlowModel(delay=0.002)}, concurrency=1, queue_size=8)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            gate = asyncio.Semaphore(32)

            async def one() -> httpx.Response:
                async with gate:
                    return await client.post("/v1/chat/completions", json=chat())

            return await asyncio.gather(*(one() for _ in range(200)))

    started = time.monotonic()
    responses = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert time.monotonic() - started < 60
    statuses = {r.status_code for r in responses}
    assert statuses <= {200, 429}, statuses
    assert 200 in statuses and 429 in statuses
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["type"] == "rate_limit_error"
    state = app.state.lamina
    assert state.pool.default().admission.running == 0
    assert state.pool.default().admission.waiting == 0


def test_disconnect_mid_stream_stops_generation_and_frees_the_slot(
    make_app: Any, live: Any
) -> None:
    model = SlowModel(delay=0.02)
    app = make_app({"lamina": model}, concurrency=1, queue_size=0)
    with live(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        with client.stream(
            "POST", "/v1/chat/completions", json=chat(WORDS, stream=True, max_tokens=500)
        ) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data: ") and "w1" in line)
        # the connection is closed here, mid-stream
        deadline = time.monotonic() + 5
        while model.closed == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert model.closed == 1
        assert model.produced < 100  # stopped long before the 200 words
        r = client.post("/v1/chat/completions", json=chat("after"))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "after"


def test_disconnect_while_waiting_non_stream_frees_the_slot(make_app: Any, live: Any) -> None:
    model = SlowModel(delay=0.05)
    app = make_app({"lamina": model}, concurrency=1, queue_size=0)
    with live(app) as server:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/v1/chat/completions", json=chat(WORDS), timeout=0.3)
        deadline = time.monotonic() + 5
        while model.closed == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert model.closed == 1 and model.produced < 100
        r = httpx.post(f"{server.url}/v1/chat/completions", json=chat("next"), timeout=10)
        assert r.status_code == 200


def test_shutdown_drains_streams_in_flight(make_app: Any, live: Any) -> None:
    model = SlowModel(delay=0.01)
    app = make_app({"lamina": model})
    server = live(app).__enter__()
    got: list[str] = []

    def consume() -> None:
        with httpx.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            json=chat(" ".join(["x"] * 60), stream=True),
            timeout=10,
        ) as r:
            got.extend(r.iter_lines())

    reader = threading.Thread(target=consume)
    reader.start()
    while model.produced < 5:
        time.sleep(0.01)
    server.stop()  # what SIGTERM does: stop accepting, drain, then exit
    reader.join(timeout=15)
    server.thread.join(timeout=15)
    assert not server.thread.is_alive()
    assert "data: [DONE]" in got
    assert model.produced == 61  # 60 words and the final delta: the stream was not cut
