"""Semantic routing: send a query to the collection(s) whose description it resembles.

Each route is a name with a description and, optionally, example queries. A query's score for
a route is its best cosine to any of those texts (one close example is enough evidence; an
average would punish routes with varied examples). The router answers the best route, plus any
other within ``margin`` of it (too close to call), when the best clears ``threshold``;
otherwise it falls back to every route. The confidence it returns is the best cosine.

>>> import numpy as np
>>> class Words:  # a toy embedder: one axis per word
...     vocab = ["refund", "invoice", "install", "error"]
...     def embed_documents(self, texts):
...         rows = [[float(w in t.lower()) + 1e-3 for w in self.vocab] for t in texts]
...         return np.array(rows, dtype=np.float32)
...     def embed_query(self, text):
...         return self.embed_documents([text])[0]
>>> router = SemanticRouter(
...     {"billing": Route("refund and invoice questions"), "support": Route("install error")},
...     Words(), threshold=0.5)
>>> router.route("where is my invoice?")[0]
['billing']
>>> router.route("hello there")[0]  # resembles nothing: every collection
['billing', 'support']

For an :class:`~lamina.retrieval.index.Index`, describe each collection once
(``index.describe_collection("hr", "leave, payroll and benefits policies", examples=[...])``)
and search with ``collection="auto"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lamina.errors import ConfigError
from lamina.models.embeddings.base import TextEmbedder, normalize

__all__ = ["ROUTER_THRESHOLD", "Route", "SemanticRouter"]

#: The default confidence threshold, a cosine calibrated for MiniLM (see SemanticRouter).
ROUTER_THRESHOLD = 0.15


@dataclass(frozen=True)
class Route:
    """What a collection is about, in words, and queries that belong to it."""

    description: str
    examples: tuple[str, ...] = ()

    def texts(self) -> list[str]:
        return [t for t in (self.description, *self.examples) if t.strip()]


class SemanticRouter:
    """Routes queries among named routes by embedding similarity; see the module docstring.

    ``threshold`` is a cosine, so it depends on the embedder. With MiniLM against one-line
    descriptions, off-topic queries score about -0.05–0.1 and on-topic ones about 0.18–0.5
    (higher against example queries), hence the default 0.15. ``margin`` keeps every route
    that close to the best: a query between two collections searches both.
    """

    def __init__(
        self,
        routes: Mapping[str, Route | str],
        embedder: TextEmbedder,
        *,
        threshold: float = ROUTER_THRESHOLD,
        margin: float = 0.05,
    ) -> None:
        if not routes:
            raise ConfigError(
                "A router needs at least one route: describe a collection first with "
                "index.describe_collection(name, description, examples=[...])."
            )
        self.routes = {n: r if isinstance(r, Route) else Route(r) for n, r in routes.items()}
        empty = [n for n, r in self.routes.items() if not r.texts()]
        if empty:
            raise ConfigError(
                f"Routes {empty} have no description nor examples to match: give each a "
                f"description or a few example queries."
            )
        self.embedder = embedder
        self.threshold = threshold
        self.margin = margin
        self.names = list(self.routes)
        texts = [t for r in self.routes.values() for t in r.texts()]
        self._owner = np.repeat(
            np.arange(len(self.names)), [len(r.texts()) for r in self.routes.values()]
        )
        self._vectors = normalize(embedder.embed_documents(texts))

    def scores(self, query: str) -> dict[str, float]:
        """Each route's best cosine to the query, best route first."""
        query_vector = normalize(self.embedder.embed_query(query))
        similarity = self._vectors @ query_vector
        best = np.full(len(self.names), -np.inf, dtype=np.float32)
        np.maximum.at(best, self._owner, similarity)
        order = np.argsort(-best, kind="stable")
        return {self.names[i]: float(best[i]) for i in order}

    def route(self, query: str) -> tuple[list[str], float]:
        """``(route names, confidence)``: the confident choice, else every route."""
        scores = self.scores(query)
        top = next(iter(scores.values()))
        if top < self.threshold:
            return list(self.names), top
        return [n for n, s in scores.items() if s >= top - self.margin], top
