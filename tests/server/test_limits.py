"""Issue 9, items 5 and 8: body and header limits, CPU work off the event loop, embeddings
turns, and request values that must be refused with a clear 400 rather than a 500."""

from __future__ import annotations

import gc
import itertools
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lamina.models.scripted import ScriptedModel
from lamina.server import create_app
from lamina.types import Message
from tests.server.conftest import LiveServer, call, make_settings

CHAT = {"model": "lamina", "messages": [{"role": "user", "content": "hi"}]}


def test_a_body_over_the_limit_is_413_before_it_is_parsed(make_app: Any) -> None:
    app = make_app(max_body_bytes=1000)
    r = call(app, "POST", "/v1/chat/completions", content=b"{" * 2000)  # not even JSON
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert "server.max_body_bytes" in r.json()["error"]["message"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b" " * 100

    assert call(app, "POST", "/v1/chat/completions", content=chunked()).status_code == 413
    assert call(app, "POST", "/v1/embeddings", content=b"[" * 2000).status_code == 413
    assert call(app, "POST", "/v1/chat/completions", json=CHAT).status_code == 200


def test_a_live_server_refuses_a_declared_huge_body_without_reading_it(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, max_body_bytes=1 << 20), warm_up=False)
    with LiveServer(app) as live, socket.create_connection(("127.0.0.1", live.port)) as sock:
        head = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 209715200\r\n\r\n"
        )
        sock.sendall(head + b"[" * 65536)  # 200 MB announced, 64 KiB sent
        sock.settimeout(10)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_oversized_headers_get_431(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), warm_up=False)
    with LiveServer(app) as live, socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n")
        sock.settimeout(10)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert b"request_header_fields_too_large" in answer


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    parts: list[bytes] = []
    try:
        while chunk := sock.recv(65536):
            parts.append(chunk)
    except ConnectionResetError:  # the server closed with our unread bytes in its buffer
        pass
    return b"".join(parts)


class SlowTokenizer(ScriptedModel):
    """Tokenizing a long prompt takes a second of (blocking) work, like a real tokenizer."""

    def count_tokens(self, prompt: Any) -> int:
        if sum(len(m.content) for m in _messages(prompt)) > 10_000:
            time.sleep(1.0)
            return 10**6
        return super().count_tokens(prompt)


def _messages(prompt: Any) -> list[Message]:
    from lamina.types import as_messages

    return as_messages(prompt)


def test_a_long_prompt_is_tokenized_off_the_event_loop(tmp_path: Path) -> None:
    # What is measured is the event loop, not the collector: a full collection of the heap a
    # whole test session leaves behind can pause every thread for most of a second.
    gc.collect()
    gc.freeze()
    app = create_app(make_settings(tmp_path), models={"lamina": SlowTokenizer(context_window=100)})
    try:
        with LiveServer(app) as live:
            latencies: list[float] = []
            done = threading.Event()

            def poll() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    httpx.get(f"{live.url}/health", timeout=10)
                    latencies.append(time.perf_counter() - started)

            poller = threading.Thread(target=poll)
            poller.start()
            body = {"model": "lamina", "messages": [{"role": "user", "content": "w " * 20_000}]}
            started = time.perf_counter()
            r = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=30)
            took = time.perf_counter() - started
            done.set()
            poller.join()
    finally:
        gc.unfreeze()
    assert r.status_code == 400 and "context window" in r.json()["error"]["message"]
    assert took >= 1.0
    # /health kept answering while the prompt was tokenized: never blocked for the whole second
    assert len(latencies) >= 5 and max(latencies) < took / 2, (max(latencies), took)


class CountingEmbedder:
    name = "counting"
    dimension = 2

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        time.sleep(0.05)
        self.batches.append(len(texts))
        return np.ones((len(texts), 2), dtype=np.float32)


def test_embeddings_inputs_are_capped(tmp_path: Path) -> None:
    app = create_app(
        make_settings(tmp_path, max_embedding_inputs=10), embedders={"e": CountingEmbedder()}
    )
    r = call(app, "POST", "/v1/embeddings", json={"model": "e", "input": ["a"] * 11})
    assert r.status_code == 400 and "server.max_embedding_inputs" in r.json()["error"]["message"]
    assert call(app, "POST", "/v1/embeddings", json={"model": "e", "input": ["a"] * 10}).is_success


def test_a_small_embedding_request_does_not_wait_for_a_large_one(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    app = create_app(make_settings(tmp_path, embedding_batch=4), embedders={"e": embedder})
    finished: list[str] = []
    with LiveServer(app) as live:

        def send(name: str, n: int) -> None:
            body = {"model": "e", "input": [f"t{i}" for i in range(n)]}
            r = httpx.post(f"{live.url}/v1/embeddings", json=body, timeout=30)
            assert r.status_code == 200 and len(r.json()["data"]) == n
            finished.append(name)

        big = threading.Thread(target=send, args=("big", 80))  # 20 turns of 4
        big.start()
        time.sleep(0.2)  # the big one is a few turns in
        send("small", 2)
        big.join()
    assert finished == ["small", "big"]
    assert max(embedder.batches) == 4


@pytest.mark.parametrize(
    ("url", "body", "words"),
    [
        (
            "/v1/chat/completions",
            {**CHAT, "messages": [{"role": "user", "content": "bad \ud800 text"}]},
            "lone UTF-16 surrogate (body.messages[0].content, character 4)",
        ),
        ("/v1/completions", {"model": "lamina", "prompt": "\udfff"}, "lone UTF-16 surrogate"),
        ("/v1/embeddings", {"model": "minilm", "input": ["ok", "x\ud800"]}, "surrogate"),
        ("/v1/chat/completions", {**CHAT, "stop": ["\ud83d"]}, "surrogate"),
        ("/v1/chat/completions", {**CHAT, "temperature": float("nan")}, "finite number"),
        ("/v1/chat/completions", {**CHAT, "top_p": float("inf")}, "finite number"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 10**30}, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 5000}, "context window is 4096"),
        ("/v1/completions", {"model": "lamina", "prompt": "x", "max_tokens": 10**6}, "4096"),
    ],
)
def test_bad_values_are_400_with_the_reason(
    make_app: Any, url: str, body: dict[str, Any], words: str
) -> None:
    import json

    # json.dumps writes a lone surrogate as its \\u escape and NaN as NaN, as a client would
    r = call(
        make_app(),
        "POST",
        url,
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]


class TimedEmbedder(CountingEmbedder):
    """Records when each turn starts and ends."""

    def __init__(self) -> None:
        super().__init__()
        self.turns: list[tuple[float, float]] = []

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors = super().embed_documents(texts)
        self.turns.append((started, time.perf_counter()))
        return vectors


def _idle_between_turns(turns: list[tuple[float, float]]) -> float:
    return sum(b[0] - a[1] for a, b in itertools.pairwise(turns))


def test_embedding_turns_leave_room_for_chats_that_are_generating(tmp_path: Path) -> None:
    from tests.server.conftest import SlowModel

    embedder = TimedEmbedder()
    app = create_app(
        make_settings(tmp_path, embedding_batch=4),
        models={"lamina": SlowModel(delay=0.05)},
        embedders={"e": embedder},
    )
    body = {"model": "e", "input": [f"t{i}" for i in range(24)]}  # 6 turns of ~50 ms
    with LiveServer(app) as live:
        httpx.post(f"{live.url}/v1/embeddings", json=body, timeout=30)
        alone = _idle_between_turns(embedder.turns)
        embedder.turns.clear()
        chat = {"model": "lamina", "messages": [{"role": "user", "content": "w " * 60}]}
        talking = threading.Thread(
            target=httpx.post, args=(f"{live.url}/v1/chat/completions",), kwargs={"json": chat}
        )
        talking.start()  # 60 words at 50 ms: generating for 3 s
        time.sleep(0.3)
        httpx.post(f"{live.url}/v1/embeddings", json=body, timeout=30)
        shared = _idle_between_turns(embedder.turns)
        talking.join()
    assert alone < 0.1  # nobody else: turns back to back
    assert shared >= 5 * 0.04  # a chat generating: a pause as long as each turn after it
