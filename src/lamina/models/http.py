"""What the HTTP backends share: one request/response shape, error mapping, SSE parsing, and
the rule for API keys.

A subclass says how to build a request body, where to send it, and how to read a response and
a stream event. Sync and async calls use the same three methods.

Credentials belong to the endpoint they were configured for. The key in ``OPENAI_API_KEY``
(``openai.api_key_env``) goes to ``openai.base_url`` and nowhere else; the one in
``ANTHROPIC_API_KEY`` to ``anthropic.base_url``. A spec naming another server
(``openai:MODEL@http://host/v1``) gets no key from the environment unless the operator named
one for that URL in ``openai.endpoint_keys`` (URL -> variable). :func:`api_key_for` is the
rule; :class:`HTTPChatModel` enforces it on whatever headers a backend hands it, so a key from
the environment cannot reach a URL taken from a spec or a request.
"""

from __future__ import annotations

import json
import logging
import os
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

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

__all__ = [
    "HTTPChatModel",
    "HTTPErrors",
    "StreamState",
    "api_key_for",
    "auth_headers",
    "error_detail",
    "same_endpoint",
]

log = logging.getLogger(__name__)

#: Headers that carry a credential; the guard in HTTPChatModel looks at these.
_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")


def same_endpoint(a: str, b: str) -> bool:
    """Whether two base URLs name the same server and path (case of scheme and host, default
    ports and a trailing slash do not matter).

    >>> same_endpoint("https://API.openai.com/v1/", "https://api.openai.com:443/v1")
    True
    >>> same_endpoint("https://api.openai.com/v1", "http://127.0.0.1:9/v1")
    False
    """

    def key(url: str) -> tuple[str, str, int | None, str, str]:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        try:
            port = parts.port or {"http": 80, "https": 443}.get(scheme)
        except ValueError:
            port = -1
        return scheme, (parts.hostname or ""), port, parts.path.rstrip("/"), parts.query

    return key(a) == key(b)


def _key_source(backend: str, settings: Settings) -> tuple[str, str, dict[str, str]] | None:
    """(key variable, the base URL it belongs to, other URLs' variables) of a backend."""
    if backend == "openai":
        cfg = settings.openai
        return cfg.api_key_env, cfg.base_url, cfg.endpoint_keys
    if backend == "anthropic":
        return settings.anthropic.api_key_env, settings.anthropic.base_url, {}
    return None


def api_key_for(base_url: str, settings: Settings, backend: str = "openai") -> str | None:
    """The API key that may be sent to ``base_url``, read from the environment, or None.

    The backend's key variable (``openai.api_key_env``) when ``base_url`` is the configured
    ``openai.base_url``; the variable ``openai.endpoint_keys`` names for ``base_url``
    otherwise; else no key at all.

    >>> import os
    >>> from lamina.settings import Settings
    >>> os.environ["DOCTEST_KEY"] = "sk-doctest"
    >>> s = Settings(openai={"api_key_env": "DOCTEST_KEY"})
    >>> api_key_for("https://api.openai.com/v1", s), api_key_for("http://127.0.0.1:9/v1", s)
    ('sk-doctest', None)
    """
    source = _key_source(backend, settings)
    if source is None:
        return None
    variable, configured, others = source
    if same_endpoint(base_url, configured):
        return os.environ.get(variable) or None
    for url, other in others.items():
        if same_endpoint(base_url, url):
            return os.environ.get(other) or None
    return None


def auth_headers(base_url: str, api_key: str | None, settings: Settings) -> dict[str, str]:
    """The Authorization header for an OpenAI-compatible server: the key given, else the one
    :func:`api_key_for` allows for ``base_url``. Required by api.openai.com only."""
    from lamina.models.openai import is_official  # openai.py imports this module

    api_key = api_key or api_key_for(base_url, settings)
    if not api_key and is_official(base_url):
        raise ConfigError(
            f"No API key for {base_url}. Set the {settings.openai.api_key_env} environment "
            f"variable, or name your own server: openai:MODEL@http://host:port/v1 "
            f"(or set openai.base_url, LAMINA_OPENAI__BASE_URL)."
        )
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def guard_headers(
    headers: dict[str, str], base_url: str, settings: Settings, backend: str
) -> dict[str, str]:
    """``headers`` without the backend's environment key unless it may go to ``base_url``.

    Where the operator named another key for ``base_url`` (``openai.endpoint_keys``), that key
    takes the environment key's place.
    """
    source = _key_source(backend, settings)
    if source is None:
        return headers
    variable, configured, _ = source
    env_key = os.environ.get(variable)
    if not env_key or same_endpoint(base_url, configured):
        return headers
    allowed = api_key_for(base_url, settings, backend)
    guarded: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in _CREDENTIAL_HEADERS and env_key in value:
            if allowed:
                guarded[name] = value.replace(env_key, allowed)
            else:
                log.info(
                    "not sending %s to %s: that key belongs to %s", variable, base_url, configured
                )
            continue
        guarded[name] = value
    return guarded


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
        backend = getattr(self, "backend", "")
        self._headers = guard_headers(headers, self.base_url, self.settings, backend)
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
        seen = _Seen()
        with self._errors(), self.client.stream("POST", self.url, json=body) as response:
            if response.status_code >= 400 or _not_a_stream(response):
                response.read()
                self._check(response)
                self._refuse_non_stream(response)
            for event in _sse_events(response.iter_lines(), seen):
                if (delta := self._event(event, state)) is not None:
                    state.chunks += 1
                    yield delta
        self._check_seen(seen)
        yield self._final(state)

    async def _astream(self, messages: list[Message], options: ChatOptions) -> AsyncIterator[Delta]:
        state = StreamState()
        body = self._body(messages, options, True)
        seen = _Seen()
        with self._errors():
            async with self.aclient.stream("POST", self.url, json=body) as response:
                if response.status_code >= 400 or _not_a_stream(response):
                    await response.aread()
                    self._check(response)
                    self._refuse_non_stream(response)
                async for event in _asse_events(response.aiter_lines(), seen):
                    if (delta := self._event(event, state)) is not None:
                        state.chunks += 1
                        yield delta
        self._check_seen(seen)
        yield self._final(state)

    def _refuse_non_stream(self, response: httpx.Response) -> None:
        kind = response.headers.get("content-type", "no content type")
        raise ProviderError(
            f"{self.name} at {self.url} answered a streaming request with {kind} instead of an "
            f"event stream: {error_detail(response)!r}. Check that the server supports "
            f"stream=true (or call it without streaming).",
            status=response.status_code,
        )

    def _check_seen(self, seen: _Seen) -> None:
        if seen.events == 0:
            what = f"this instead: {seen.other[:200]!r}" if seen.other else "an empty body"
            raise ProviderError(
                f"{self.name} at {self.url} sent no stream events for a streaming request, "
                f"{what}. Check that the server supports stream=true."
            )

    def _final(self, state: StreamState) -> Delta:
        usage = Usage(
            prompt_tokens=state.prompt_tokens,
            # Servers that send no usage in streams: one content chunk is one token.
            completion_tokens=state.completion_tokens or state.chunks,
        )
        return Delta(finish_reason=state.finish_reason or "stop", usage=usage)

    def _errors(self) -> HTTPErrors:
        return HTTPErrors(self.url)

    def _key_hint(self) -> str:
        """What to check after a 401/403: usually the key variable; when the environment key
        was withheld because it belongs to another URL, how to name one for this URL."""
        source = _key_source(getattr(self, "backend", ""), self.settings)
        sent = any(name.lower() in _CREDENTIAL_HEADERS for name in self._headers)
        if source is None or sent:
            return "Check the key variable."
        variable, configured, _ = source
        if os.environ.get(variable) and not same_endpoint(self.base_url, configured):
            return (
                f"No key was sent: {variable} is sent only to {configured}. To give this "
                f"server a key, name a variable for it in the openai.endpoint_keys table: "
                f'"{self.base_url}" = "VARIABLE".'
            )
        return f"No key was sent: set {variable}."

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
                f"{where} refused the API key ({status}): {detail}. {self._key_hint()}",
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


@dataclass
class _Seen:
    """How many events a stream held, and the start of anything else it held."""

    events: int = 0
    other: str = ""

    def line(self, line: str) -> None:
        sse = line.startswith(("data:", "event:", "id:", "retry:", ":"))
        if line and not sse and len(self.other) < 300:
            self.other += line[:300] + "\n"


def _not_a_stream(response: httpx.Response) -> bool:
    """A JSON answer to a streaming request (some servers ignore ``stream`` or send errors so)."""
    kind: str = response.headers.get("content-type", "")
    return kind.split(";")[0].strip() == "application/json"


def _sse_events(lines: Iterator[str], seen: _Seen | None = None) -> Iterator[dict[str, Any]]:
    seen = seen if seen is not None else _Seen()
    data: list[str] = []
    for line in _with_end(lines):
        seen.line(line)
        event = _parse_sse_line(line, data)
        if event is not None:
            seen.events += 1
            if event.get("__done__"):
                return
            yield event


def _with_end(lines: Iterator[str]) -> Iterator[str]:
    yield from lines
    yield ""


async def _asse_events(
    lines: AsyncIterator[str], seen: _Seen | None = None
) -> AsyncIterator[dict[str, Any]]:
    seen = seen if seen is not None else _Seen()
    data: list[str] = []
    async for line in lines:
        seen.line(line)
        event = _parse_sse_line(line, data)
        if event is not None:
            seen.events += 1
            if event.get("__done__"):
                return
            yield event
    event = _parse_sse_line("", data)
    if event is not None:
        seen.events += 1
        if not event.get("__done__"):
            yield event
