"""Server test helpers: a slow scripted model, in-process clients and a live uvicorn server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from lamina.models.scripted import ScriptedModel
from lamina.server import create_app
from lamina.settings import ServerSettings, Settings
from lamina.types import ChatOptions, Delta, Message


class SlowModel(ScriptedModel):
    """Streams its reply one word every ``delay`` seconds; counts the words it produced."""

    def __init__(self, delay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay = delay
        self.produced = 0
        self.closed = 0

    async def _astream(self, messages: list[Message], options: ChatOptions) -> AsyncIterator[Delta]:
        try:
            async for delta in super()._astream(messages, options):
                await asyncio.sleep(self.delay)
                self.produced += 1
                yield delta
        finally:
            self.closed += 1


def make_settings(home: Any, **server: Any) -> Settings:
    return Settings(
        home=home, model="scripted", max_retries=0, cache=False, server=ServerSettings(**server)
    )


@pytest.fixture
def make_app(tmp_path: Any) -> Any:
    def build(given: dict[str, Any] | None = None, **server: Any) -> FastAPI:
        """An app serving ``given`` model instances; keywords are server settings."""
        return create_app(make_settings(tmp_path / "home", **server), models=given)

    return build


def call(app: FastAPI, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One in-process request (the whole body is read, streams included)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app: FastAPI, grace_s: int = 10) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        from lamina.server.protocol import LaminaH11Protocol

        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=grace_s,
            http=LaminaH11Protocol,  # what `lamina serve` runs
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.thread.join(timeout=20)


@pytest.fixture
def live() -> Iterator[type[LiveServer]]:
    yield LiveServer
