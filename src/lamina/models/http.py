"""What the HTTP backends share: one request/response shape, error mapping, SSE parsing.

A subclass says how to build a request body, where to send it, and how to read a response and
a stream event. Sync and async calls use the same three methods.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from lamina.errors import (
    AuthenticationError,
    ConfigError,
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    TransientError,
)
from lamina.models.base import BaseChatModel, Prompt
from lamina.models.retry import parse_retry_after
from lamina.settings import Settings
from lamina.types import ChatOptions, Completion, Delta, FinishReason, Message, Usage, as_messages

__all__ = ["HTTPChatModel", "HTTPErrors", "StreamState", "error_detail"]


@dataclass
class StreamState:
    """What a stream has said so far: usage and finish reason arrive in different events."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunks: int = 0
    finish_reason: FinishReason | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class HTTPChatModel(BaseChatModel):
    """A chat model behind an HTTP API. Token counts here are estimates (about 4 characters per
    token); the usage on results is the server's own count."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        headers: dict[str, str],
        settings: Settings | None = None,
    ) -> None:
        super().__init__(model, settings=settings)
        self.base_url = base_url.rstrip("/")
        self._headers = headers
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None

    # -- what a subclass provides ---------------------------------------------------------------

    @abstractmethod
    def _endpoint(self) -> str: ...

    @abstractmethod
    def _body(
        self, messages: list[Message], options: ChatOptions, stream: bool
    ) -> dict[str, Any]: ...

    @abstractmethod
    def _completion(self, body: dict[str, Any]) -> Completion: ...

    @abstractmethod
    def _event(self, event: dict[str, Any], state: StreamState) -> Delta | None:
        """Read one stream event; return a delta with text, or None."""

    # -- shared ---------------------------------------------------------------------------------

    def count_tokens(self, prompt: Prompt) -> int:
        if isinstance(prompt, str):
            return max(1, len(prompt) // 4)
        return sum(4 + len(m.content) // 4 for m in as_messages(prompt))

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(headers=self._headers, timeout=self.settings.timeout_s)
        return self._client

    @property
    def aclient(self) -> httpx.AsyncClient:
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(
                headers=self._headers, timeout=self.settings.timeout_s
            )
        return self._aclient

    @property
    def url(self) -> str:
        return self.base_url + self._endpoint()

    def _chat(self, messages: list[Message], options: ChatOptions) -> Completion:
        with self._errors():
            response = self.client.post(self.url, json=self._body(messages, options, False))
        self._check(response)
        return self._completion(response.json())

    async def _achat(self, messages: list[Message], options: ChatOptions) -> Completion:
        with self._errors():
            response = await self.aclient.post(self.url, json=self._body(messages, options, False))
        self._check(response)
        return self._completion(response.json())

    def _stream(self, messages: list[Message], options: ChatOptions) -> Iterator[Delta]:
        state = StreamState()
        body = self._body(messages, options, True)
        with self._errors(), self.client.stream("POST", self.url, json=body) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            for event in _sse_events(response.iter_lines()):
                if (delta := self._event(event, state)) is not None:
                    state.chunks += 1
                    yield delta
        yield self._final(state)

    async def _astream(self, messages: list[Message], options: ChatOptions) -> AsyncIterator[Delta]:
        state = StreamState()
        body = self._body(messages, options, True)
        with self._errors():
            async with self.aclient.stream("POST", self.url, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._check(response)
                async for event in _asse_events(response.aiter_lines()):
                    if (delta := self._event(event, state)) is not None:
                        state.chunks += 1
                        yield delta
        yield self._final(state)

    def _final(self, state: StreamState) -> Delta:
        usage = Usage(
            prompt_tokens=state.prompt_tokens,
            # Servers that send no usage in streams: one content chunk is one token.
            completion_tokens=state.completion_tokens or state.chunks,
        )
        return Delta(finish_reason=state.finish_reason or "stop", usage=usage)

    def _errors(self) -> HTTPErrors:
        return HTTPErrors(self.url)

    def _check(self, response: httpx.Response) -> None:
        """Turn an error status into the matching Lamina error."""
        status = response.status_code
        if status < 400:
            return
        detail = error_detail(response)
        where = f"{self.name} at {self.url}"
        if status == 429:
            raise RateLimitError(
                f"{where} is rate limiting (429): {detail}",
                status=status,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 500 or status in (408, 409):
            raise TransientError(
                f"{where} failed with {status}: {detail}",
                status=status,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status in (401, 403):
            raise AuthenticationError(
                f"{where} refused the API key ({status}): {detail}. Check the key variable.",
                status=status,
            )
        if status == 404:
            raise ConfigError(
                f"{where} answered 404: {detail}. Check the model name and the base URL "
                f"(it usually ends in /v1)."
            )
        if status in (400, 413, 422):
            raise InvalidRequestError(f"{where} rejected the request ({status}): {detail}")
        raise ProviderError(f"{where} failed with {status}: {detail}", status=status)


class HTTPErrors:
    """Context manager mapping httpx transport failures to TransientError."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if isinstance(exc, httpx.TimeoutException):
            raise TransientError(f"Timed out talking to {self.url}: {exc!r}") from exc
        if isinstance(exc, httpx.TransportError):
            raise TransientError(
                f"Cannot reach {self.url} ({exc!r}). Is the server running and the base URL right?"
            ) from exc
        return False


def error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:300]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)[:300]
    return str(error)[:300]


def _parse_sse_line(line: str, data: list[str]) -> dict[str, Any] | None:
    """Accumulate ``data:`` lines; a blank line ends an event. Returns a finished event."""
    if line.startswith("data:"):
        data.append(line[5:].strip())
        return None
    if line == "" and data:
        payload = "\n".join(data)
        data.clear()
        if payload == "[DONE]":
            return {"__done__": True}
        parsed: dict[str, Any] = json.loads(payload)
        return parsed
    return None


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    data: list[str] = []
    for line in _with_end(lines):
        event = _parse_sse_line(line, data)
        if event is not None:
            if event.get("__done__"):
                return
            yield event


def _with_end(lines: Iterator[str]) -> Iterator[str]:
    yield from lines
    yield ""


async def _asse_events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    data: list[str] = []
    async for line in lines:
        event = _parse_sse_line(line, data)
        if event is not None:
            if event.get("__done__"):
                return
            yield event
    event = _parse_sse_line("", data)
    if event is not None and not event.get("__done__"):
        yield event
