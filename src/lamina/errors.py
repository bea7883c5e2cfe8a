"""Every error Lamina raises on purpose.

Errors that only one edge raises live beside it (the module is named in brackets); every
subclass of ``LaminaError`` appears in this tree (tests/test_architecture.py checks).
Messages say what went wrong, with the offending value, and what to do next. The CLI and the
server turn these into exit codes and HTTP statuses at the edge; nothing below them does.

    LaminaError
    ├── ConfigError              bad settings, unknown model spec, missing API key
    ├── ModelNotFoundError       a model file or package is not installed
    ├── NativeCrashError         the llama.cpp runtime dies on a signal on this machine
    ├── MissingDependencyError   an optional extra is not installed
    ├── ContextOverflowError     a prompt does not fit the model's context window
    ├── InvalidRequestError      the request itself is wrong (bad options, bad schema)
    │   ├── UploadTooLargeError      (server.uploads) an upload over the size limit
    │   ├── BodyTooLargeError        (server.errors) a request body over the limit: 413
    │   ├── InvalidCollectionError   (server.tenancy) a collection name that is not one
    │   ├── PromptError              (prompts.errors) a template that does not load, or a
    │   │                            render with a missing or extra variable
    │   └── DatasetError             (tuning.errors) training data with bad records, by line
    ├── IncompleteOutputError    structured output cut off by max_tokens before it closed
    ├── OutputParseError         (prompts.errors) no reply of a model had the JSON asked for
    ├── LoadError                (retrieval.errors) a document cannot be read; it is skipped
    ├── IndexBusyError           (retrieval.errors) another ingest is writing to the index
    ├── TuningError              (tuning.errors) a fine-tuning run cannot start, resume, export
    ├── NotServedError           (server.errors) a model id the operator did not configure
    ├── ModelUnavailableError    (server.errors) a configured model failed to load: 503
    ├── NotImplementedFeature    (server.errors) an API feature Lamina does not offer: 501
    ├── RequestTimeout           (server.errors) the whole-request deadline passed: 504
    ├── NotFoundError            (server.tenancy) no such document/job/run for this key: 404
    ├── ForbiddenError           (server.tenancy) visible but not this key's to change: 403
    ├── JobsClosedError          (server.jobs) shutting down, no new ingest job: 503
    ├── ToolError                (tools.errors) a tool call failed; the agent shows it to the model
    │   └── SandboxError             (tools.errors) the python sandbox cannot isolate code here
    └── ProviderError            a model backend failed
        ├── TransientError       worth retrying: connect error, timeout, 429, 5xx
        │   ├── RateLimitError   429 / client-side limit; carries retry_after seconds
        │   └── OverloadedError  a local scheduler's queue is full; carries retry_after
        └── AuthenticationError  401/403: the key is wrong or missing
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ContextOverflowError",
    "IncompleteOutputError",
    "InvalidRequestError",
    "LaminaError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "NativeCrashError",
    "OverloadedError",
    "ProviderError",
    "RateLimitError",
    "TransientError",
]


class LaminaError(Exception):
    """Base class of every error Lamina raises on purpose."""


class ConfigError(LaminaError):
    """Settings are missing or wrong; the message names the setting to change."""


class ModelNotFoundError(LaminaError):
    """A model file or the package carrying it is not installed."""


class NativeCrashError(LaminaError):
    """The llama.cpp runtime died on a signal (``signal``, e.g. 'SIGILL') in a test decode."""

    def __init__(self, message: str, *, signal: str) -> None:
        super().__init__(message)
        self.signal = signal


class MissingDependencyError(LaminaError):
    """An optional dependency is missing; the message carries the install command."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"This feature needs the optional package {package!r}. "
            f"Install it with: pip install 'lamina[{extra}]'"
        )
        self.package = package
        self.extra = extra


class InvalidRequestError(LaminaError):
    """The request is malformed: bad options, an invalid JSON schema, an empty prompt."""


class IncompleteOutputError(LaminaError):
    """JSON output reached max_tokens before it was complete, so it does not parse."""

    def __init__(self, text: str, max_tokens: int) -> None:
        super().__init__(
            f"The JSON output reached max_tokens={max_tokens} before it was complete "
            f"({len(text)} characters so far). Raise max_tokens, or bound the schema "
            f"(maxLength on strings, maxItems on arrays) so the answer is finite."
        )
        self.text = text
        self.max_tokens = max_tokens


class ContextOverflowError(LaminaError):
    """The prompt does not fit the context window. Never truncated unless asked for."""

    def __init__(self, prompt_tokens: int, context_window: int, model: str) -> None:
        super().__init__(
            f"The prompt is {prompt_tokens} tokens but {model!r} has a {context_window}-token "
            f"context window. Shorten the prompt, use a model with a larger window, or truncate "
            f"explicitly with truncate='start' (drops the oldest turns first)."
        )
        self.prompt_tokens = prompt_tokens
        self.context_window = context_window
        self.model = model


class ProviderError(LaminaError):
    """A model backend failed. ``status`` is the HTTP status where there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientError(ProviderError):
    """A failure worth retrying: connection error, timeout, 429 or a 5xx answer."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class RateLimitError(TransientError):
    """Too many requests, from the server (429) or from the client-side limiter."""


class AuthenticationError(ProviderError):
    """The API key is missing, wrong or lacks permission."""


class OverloadedError(TransientError):
    """Lamina's own request queue is full; try again after ``retry_after`` seconds."""
