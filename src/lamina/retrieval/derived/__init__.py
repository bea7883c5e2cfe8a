"""Search indexes derived from a store's data, rebuildable from it at any time: BM25 and dense
(exact or IVF), and the SQLite store's local indexes that keep them current (``local``)."""

from lamina.retrieval.derived.bm25 import BM25, terms
from lamina.retrieval.derived.dense import DenseIndex, ExactDenseIndex, IVFDenseIndex

__all__ = ["BM25", "DenseIndex", "ExactDenseIndex", "IVFDenseIndex", "terms"]
