"""Any OpenAI-compatible ``POST /embeddings`` endpoint: OpenAI, vLLM, Ollama, TEI, llama.cpp.

Spec: ``openai:MODEL`` uses the ``openai.base_url`` setting; ``openai:MODEL@URL`` names the
server inline, e.g. ``openai:nomic-embed-text@http://localhost:11434/v1``. The key comes from
the variable named by ``openai.api_key_env`` (``OPENAI_API_KEY``) and is sent only to
``openai.base_url``; another URL gets the key ``openai.endpoint_keys`` names for it, or none
(:func:`lamina.models.http.api_key_for`). A key is required only for api.openai.com. Inputs go
in batches of ``batch_size``; each batch is retried on 429, 5xx and connection errors with the
settings' retry policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Self

import httpx
import numpy as np

from lamina.errors import (
    AuthenticationError,
    ConfigError,
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    TransientError,
)
from lamina.models.embeddings.base import Vectors, normalize
from lamina.models.http import HTTPErrors, auth_headers, error_detail
from lamina.models.openai import split_spec
from lamina.models.retry import RetryPolicy, parse_retry_after
from lamina.settings import Settings, get_settings

__all__ = ["OpenAIEmbedder"]

#: Known models: (dimension, max input tokens).
KNOWN = {
    "text-embedding-3-small": (1536, 8191),
    "text-embedding-3-large": (3072, 8191),
    "text-embedding-ada-002": (1536, 8191),
}


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible server. Token counts are estimates (four
    characters per token, rounded up, so chunks sized with them rarely overflow the model);
    ``dimension`` of an unknown model is learnt from one call."""

    backend = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        batch_size: int = 128,
        dimension: int | None = None,
        max_tokens: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.model = model
        self.base_url = (base_url or self.settings.openai.base_url).rstrip("/")
        headers = auth_headers(self.base_url, api_key, self.settings)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}.")
        self.batch_size = batch_size
        self.retry = RetryPolicy(
            self.settings.max_retries, self.settings.backoff_base_s, self.settings.backoff_max_s
        )
        known = KNOWN.get(model)
        self._dimension = dimension or (known[0] if known else None)
        self._max_tokens = max_tokens or (known[1] if known else 512)
        self.client = httpx.Client(headers=headers, timeout=self.settings.timeout_s)

    @classmethod
    def from_spec(cls, name: str | None, settings: Settings) -> Self:
        model, url = split_spec(name, "'openai:text-embedding-3-small'", "embedder")
        return cls(model, base_url=url, settings=settings)

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    @property
    def url(self) -> str:
        return self.base_url + "/embeddings"

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self._post(["dimension probe"]).shape[1])
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        """An estimate, rounded up (``"hello"`` is 2); nothing is added around a text."""
        return -(-len(text) // 4)

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a list of texts; use embed_query for one")
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        batches = [
            list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)
        ]
        out = np.concatenate([self.retry.call(partial(self._post, b)) for b in batches])
        self._dimension = int(out.shape[1])
        return out

    def embed_query(self, text: str) -> Vectors:
        vector: Vectors = self.embed_documents([text])[0]
        return vector

    def _post(self, texts: list[str]) -> Vectors:
        """One request, no retries; rows in input order, normalised."""
        with HTTPErrors(self.url):
            response = self.client.post(self.url, json={"model": self.model, "input": texts})
        self._check(response)
        body: dict[str, Any] = response.json()
        try:
            rows = sorted(body["data"], key=lambda item: item["index"])
            vectors = np.array([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(
                f"{self.url} sent an answer that is not an embeddings response: {str(body)[:200]}"
            ) from exc
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ProviderError(
                f"{self.url} returned {len(vectors)} embeddings for {len(texts)} inputs."
            )
        return normalize(vectors)

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = error_detail(response)
        where = f"{self.name} at {self.url}"
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 429:
            raise RateLimitError(
                f"{where} is rate limiting (429): {detail}", status=status, retry_after=retry_after
            )
        if status >= 500 or status in (408, 409):
            raise TransientError(
                f"{where} failed with {status}: {detail}", status=status, retry_after=retry_after
            )
        if status in (401, 403):
            raise AuthenticationError(
                f"{where} refused the API key ({status}): {detail}. "
                f"Check {self.settings.openai.api_key_env}.",
                status=status,
            )
        if status == 404:
            raise ConfigError(
                f"{where} answered 404: {detail}. Check the model name and the base URL "
                "(it usually ends in /v1)."
            )
        if status in (400, 413, 422):
            raise InvalidRequestError(f"{where} rejected the request ({status}): {detail}")
        raise ProviderError(f"{where} failed with {status}: {detail}", status=status)
