"""Search indexes derived from a store: BM25 and dense. Rebuildable from the store at any time."""

from lamina.retrieval.derived.bm25 import BM25Index
from lamina.retrieval.derived.dense import DenseIndex, ExactDenseIndex, IVFDenseIndex

__all__ = ["BM25Index", "DenseIndex", "ExactDenseIndex", "IVFDenseIndex"]
