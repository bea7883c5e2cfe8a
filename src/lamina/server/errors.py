"""Lamina errors to HTTP answers, in OpenAI's error shape. The only place statuses are chosen.

429  OverloadedError (the queue is full), RateLimitError (key limit or upstream 429)
400  InvalidRequestError, ContextOverflowError, IncompleteOutputError, ConfigError
404  NotServedError (code ``model_not_found``): a model id the server does not serve
413  UploadTooLargeError, BodyTooLargeError (server.max_body_bytes)
501  MissingDependencyError, no embedding backend
502  AuthenticationError (the upstream provider refused our key), other ProviderError
503  ModelUnavailableError: a configured model failed to load (details in the server log)
504  RequestTimeout (server.request_timeout_s passed)

The error body's ``code`` is the error's ``code`` attribute when it has one, else its class name.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse

from lamina.errors import (
    AuthenticationError,
    ConfigError,
    ContextOverflowError,
    IncompleteOutputError,
    InvalidRequestError,
    LaminaError,
    MissingDependencyError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    RateLimitError,
    TransientError,
)
from lamina.server.uploads import UploadTooLargeError

__all__ = [
    "BodyTooLargeError",
    "ModelUnavailableError",
    "NotServedError",
    "RequestTimeout",
    "error_body",
    "error_response",
    "not_served_message",
    "status_of",
]


class NotServedError(LaminaError):
    """The request names a model (or embedder) this server does not serve."""

    code = "model_not_found"


def not_served_message(requested: str, ids: list[str]) -> str:
    """The 404 text: the served ids and the request's value cut short; nothing about files.

    >>> print(not_served_message("local:/etc/shadow", ["lamina", "qwen"]))  # doctest: +ELLIPSIS
    The model 'local:/etc/shadow' is not served here. Use one of: lamina, qwen (GET /v1/models...
    """
    shown = requested if len(requested) <= 80 else requested[:80] + "..."
    return (
        f"The model {shown!r} is not served here. Use one of: {', '.join(ids)} "
        f"(GET /v1/models lists them)."
    )


class ModelUnavailableError(LaminaError):
    """A configured model could not be built; the reason is logged, not sent to the client."""

    code = "model_unavailable"

    def __init__(self, served_id: str) -> None:
        super().__init__(
            f"The model {served_id!r} is configured but could not be loaded; the server log "
            f"has the details."
        )


class BodyTooLargeError(InvalidRequestError):
    """A request body is larger than ``server.max_body_bytes`` (HTTP 413)."""

    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is larger than the limit of {limit} bytes. Send less (fewer "
            f"messages or inputs per request), or raise server.max_body_bytes "
            f"(LAMINA_SERVER__MAX_BODY_BYTES)."
        )
        self.limit = limit


class NotImplementedFeature(LaminaError):
    """The server lacks what the route needs (e.g. no embedding backend is installed)."""


class RequestTimeout(LaminaError):
    """The request ran past ``server.request_timeout_s``."""

    def __init__(self, seconds: float, stage: str) -> None:
        super().__init__(
            f"The request took longer than {seconds:g} s ({stage}). Ask for fewer tokens, "
            f"retry later, or raise server.request_timeout_s (LAMINA_SERVER__REQUEST_TIMEOUT_S)."
        )


_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    501: "not_implemented",
    502: "upstream_error",
    503: "server_error",
    504: "timeout",
}


def status_of(exc: LaminaError) -> int:
    if isinstance(exc, RateLimitError | OverloadedError) or (
        isinstance(exc, TransientError) and exc.status == 429
    ):
        return 429
    if isinstance(exc, RequestTimeout):
        return 504
    if isinstance(exc, UploadTooLargeError | BodyTooLargeError):
        return 413
    if isinstance(exc, ModelUnavailableError):
        return 503
    if isinstance(exc, NotServedError | ModelNotFoundError):
        return 404
    if isinstance(exc, MissingDependencyError | NotImplementedFeature):
        return 501
    if isinstance(
        exc, InvalidRequestError | ContextOverflowError | IncompleteOutputError | ConfigError
    ):
        return 400
    if isinstance(exc, AuthenticationError | ProviderError):
        return 502
    return 500


def error_body(message: str, status: int, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "server_error"),
            "param": None,
            "code": code,
        }
    }


def error_response(exc: LaminaError) -> JSONResponse:
    status = status_of(exc)
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if status == 429:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after or 1)))
    code = getattr(exc, "code", None) or type(exc).__name__
    return JSONResponse(error_body(str(exc), status, code), status_code=status, headers=headers)
