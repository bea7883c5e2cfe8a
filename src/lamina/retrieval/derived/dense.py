"""Dense (embedding) search: exact for small and medium indexes, IVF for millions of vectors.

Vectors are L2-normalised, so the inner product is the cosine similarity.

>>> index = ExactDenseIndex(np.eye(3, dtype=np.float32))
>>> rows, scores = index.search(np.array([0.0, 1.0, 0.0], dtype=np.float32), k=2)
>>> int(rows[0]), float(scores[0])
(1, 1.0)
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from lamina.errors import MissingDependencyError

__all__ = ["DenseIndex", "ExactDenseIndex", "IVFDenseIndex", "top_k"]

Vectors = npt.NDArray[np.float32]
Rows = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


def _faiss() -> Any:
    """faiss, imported on first use (an optional extra); typed loosely: its stubs lag its API."""
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError("faiss-cpu", "ann") from exc
    return faiss


def top_k(scores: npt.NDArray[np.float32], k: int) -> tuple[Rows, npt.NDArray[np.float32]]:
    """Rows of the k highest scores, best first.

    >>> rows, _ = top_k(np.array([0.1, 0.9, 0.5], dtype=np.float32), 2)
    >>> rows.tolist()
    [1, 2]
    """
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return order.astype(np.int64), scores[order]


class DenseIndex(Protocol):
    size: int

    def search(
        self, query: Vectors, k: int, mask: Mask | None = None
    ) -> tuple[Rows, npt.NDArray[np.float32]]: ...

    def vectors_of(self, rows: Rows) -> Vectors: ...

    def memory_bytes(self) -> int: ...

    def save(self, path: Path) -> None: ...


class ExactDenseIndex:
    """Brute-force inner product: exact, and fast up to a few hundred thousand vectors."""

    def __init__(self, vectors: Vectors) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.size = len(self.vectors)

    def scores(self, query: Vectors) -> npt.NDArray[np.float32]:
        if self.size == 0:
            return np.zeros(0, dtype=np.float32)
        return self.vectors @ query.astype(np.float32)

    def search(
        self, query: Vectors, k: int, mask: Mask | None = None
    ) -> tuple[Rows, npt.NDArray[np.float32]]:
        scores = self.scores(query)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf).astype(np.float32)
            k = min(k, int(mask.sum()))
        return top_k(scores, k)

    def vectors_of(self, rows: Rows) -> Vectors:
        return np.asarray(self.vectors[rows], dtype=np.float32)

    def memory_bytes(self) -> int:
        return int(self.vectors.nbytes)

    def save(self, path: Path) -> None:
        np.save(path, self.vectors)

    @classmethod
    def load(cls, path: Path) -> ExactDenseIndex:
        return cls(np.load(path, mmap_mode="r"))


class IVFDenseIndex:
    """An inverted-file index (faiss ``IndexIVFFlat``, inner product) for large collections.

    k-means cuts the space into ``nlist`` cells (4·√n, the low end of faiss's 4–16·√n
    guideline: fewer cells train faster on few cores); a query scans the ``nprobe`` nearest
    cells, by default 1/16 of them (about 6% of the vectors) but at least 64, since with few
    cells a query's neighbourhood spans a larger share of them. Real embeddings need more
    probes than clustered synthetic data: on SciFact's 17k MiniLM chunk vectors (440 cells)
    recall@10 against exact search is 0.95 at 32 probes and 0.977 at 64, while synthetic
    clustered data reaches 1.0 at 1M with 62 of 4000 (``benchmarks/dense_scale.py``).

    Vectors carry ids (by default their positions): :meth:`add` files new ones into the cells
    trained already and :meth:`remove` takes some out, both without retraining; ``trained``
    says how many vectors the cells were trained for, so the owner can tell when they have
    drifted. One lock serialises faiss calls, so the index is safe to share between threads.

    A filter (``mask``, indexed by id) is applied while scanning. A narrow filter would leave
    the probed cells nearly empty of allowed vectors, so the probe count grows by the inverse
    of the allowed fraction, and below ``exact_below`` allowed vectors they are compared
    exactly instead.
    """

    def __init__(
        self, index: Any, nprobe: int, exact_below: int = 20_000, trained: int | None = None
    ) -> None:
        self.index = index
        self.nprobe = nprobe
        self.exact_below = exact_below
        self.trained = int(index.ntotal) if trained is None else trained
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(
        cls,
        vectors: Vectors,
        *,
        ids: Rows | None = None,
        nlist: int | None = None,
        nprobe: int | None = None,
        train_points_per_list: int = 39,
        seed: int = 0,
    ) -> IVFDenseIndex:
        """Train on a sample of ``train_points_per_list · nlist`` vectors (faiss's minimum for
        stable k-means), then add every vector under its id (default: its position)."""
        faiss = _faiss()
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = data.shape
        if n == 0:
            raise ValueError("IVFDenseIndex needs at least one vector to train on.")
        nlist = nlist or max(1, min(n // train_points_per_list, int(4 * math.sqrt(n))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.niter = 10  # cells need only be rough Voronoi regions: more probes cover the rest
        rng = np.random.default_rng(seed)
        train = min(n, train_points_per_list * nlist)
        index.train(data[np.sort(rng.choice(n, size=train, replace=False))])
        # A hash table from id to list entry: ids need not be dense, and removal stays cheap.
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        index.add_with_ids(data, _ids(ids, n))
        index.nprobe = nprobe or min(nlist, max(64, nlist // 16))
        return cls(index, index.nprobe)

    @property
    def nlist(self) -> int:
        return int(self.index.nlist)

    def add(self, vectors: Vectors, ids: Rows) -> None:
        """File vectors into the trained cells (no retraining)."""
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(data):
            with self._lock:
                self.index.add_with_ids(data, _ids(ids, len(data)))

    def remove(self, ids: Rows) -> int:
        """Take vectors out by id; returns how many were there."""
        faiss = _faiss()
        wanted = np.ascontiguousarray(ids, dtype=np.int64)
        if wanted.size == 0:
            return 0
        with self._lock:
            return int(self.index.remove_ids(faiss.IDSelectorArray(wanted)))

    def search(
        self, query: Vectors, k: int, mask: Mask | None = None
    ) -> tuple[Rows, npt.NDArray[np.float32]]:
        faiss = _faiss()
        query = query.reshape(1, -1).astype(np.float32)
        params = None
        if mask is not None:
            allowed = np.flatnonzero(mask).astype(np.int64)
            if allowed.size <= self.exact_below:
                rows, scores = top_k(self.vectors_of(allowed) @ query[0], k)
                return allowed[rows], scores
            nprobe = min(self.nlist, math.ceil(self.nprobe * max(self.size, 1) / allowed.size))
            params = faiss.SearchParametersIVF(sel=faiss.IDSelectorBatch(allowed), nprobe=nprobe)
        with self._lock:
            scores, rows = self.index.search(query, k, params=params)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def vectors_of(self, rows: Rows) -> Vectors:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros((0, self.index.d), dtype=np.float32)
        with self._lock:
            return np.asarray(self.index.reconstruct_batch(rows), dtype=np.float32)

    def memory_bytes(self) -> int:
        """Vectors and ids in the lists, the direct map, and the centroids."""
        return int(self.size * (self.index.d * 4 + 8 + 16) + self.nlist * self.index.d * 4)

    def save(self, path: Path) -> None:
        with self._lock:
            _faiss().write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, nprobe: int, trained: int | None = None) -> IVFDenseIndex:
        faiss = _faiss()
        index = faiss.read_index(str(path))
        if index.direct_map.type != faiss.DirectMap.Hashtable:
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        index.nprobe = nprobe
        return cls(index, nprobe, trained=trained)


def _ids(ids: Rows | None, n: int) -> Rows:
    if ids is None:
        return np.arange(n, dtype=np.int64)
    given = np.ascontiguousarray(ids, dtype=np.int64)
    if given.shape != (n,):
        raise ValueError(f"{n} vectors but ids of shape {given.shape}")
    return given
