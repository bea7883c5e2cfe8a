"""Dense indexes: IVF against exact search on clustered data, filters, ids added and removed,
persistence, and the SQLite store switching to IVF above its threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from lamina.retrieval.derived.dense import ExactDenseIndex, IVFDenseIndex
from lamina.retrieval.index import Index
from lamina.testing import HashEmbedder
from tests.conftest import require
from tests.retrieval.test_index import write_corpus

require("faiss", "the IVF dense index needs it: pip install 'lamina[ann]'")


def clustered(n: int, dim: int = 32, centres: int = 40, seed: int = 0) -> npt.NDArray[np.float32]:
    """Unit vectors around random centres (cosine ~0.7 to their centre), like embeddings."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dim))
    points = middle[rng.integers(centres, size=n)] / np.sqrt(dim)
    points = points / np.linalg.norm(points, axis=1, keepdims=True)
    points = points + rng.standard_normal((n, dim)) / np.sqrt(dim)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    vectors = clustered(6_000)
    rng = np.random.default_rng(1)
    near = vectors[rng.choice(len(vectors), 50, replace=False)]
    queries = near + 0.8 * rng.standard_normal(near.shape).astype(np.float32) / np.sqrt(32)
    return vectors, queries / np.linalg.norm(queries, axis=1, keepdims=True)


def recall(
    index: IVFDenseIndex,
    exact: ExactDenseIndex,
    queries: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_] | None = None,
) -> float:
    found = []
    for query in queries:
        truth = set(exact.search(query, 10, mask)[0].tolist())
        found.append(len(truth & set(index.search(query, 10, mask)[0].tolist())) / len(truth))
    return float(np.mean(found))


def test_ivf_recall_against_exact_on_clustered_data(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, queries = data
    index = IVFDenseIndex.build(vectors)
    assert index.size == len(vectors)
    assert (index.nlist, index.nprobe) == (153, 64)  # 39 training points a cell; 64 probed
    assert recall(index, ExactDenseIndex(vectors), queries) >= 0.95
    rows, scores = index.search(queries[0], 5)
    assert list(scores) == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, vectors[rows] @ queries[0], rtol=1e-5)


@pytest.mark.parametrize("allowed", [0.5, 0.01])  # wide: scanned with more probes; narrow: exact
def test_ivf_respects_masks(data: tuple[np.ndarray, np.ndarray], allowed: float) -> None:
    vectors, queries = data
    index = IVFDenseIndex.build(vectors)
    index.exact_below = 100
    mask = np.random.default_rng(2).random(len(vectors)) < allowed
    for query in queries[:10]:
        rows, _ = index.search(query, 10, mask)
        assert len(rows) == 10 and mask[rows].all()
    assert recall(index, ExactDenseIndex(vectors), queries, mask) >= 0.95


def test_vectors_of_and_save_load_round_trip(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    vectors, queries = data
    index = IVFDenseIndex.build(vectors, nprobe=8)
    rows = np.array([5, 0, 4_321])
    np.testing.assert_array_equal(index.vectors_of(rows), vectors[rows])
    index.save(tmp_path / "dense.faiss")
    loaded = IVFDenseIndex.load(tmp_path / "dense.faiss", nprobe=8)
    assert (loaded.size, loaded.nprobe, loaded.nlist) == (index.size, 8, index.nlist)
    for query in queries[:5]:
        np.testing.assert_array_equal(loaded.search(query, 10)[0], index.search(query, 10)[0])
    np.testing.assert_array_equal(loaded.vectors_of(rows), vectors[rows])
    assert loaded.memory_bytes() >= vectors.nbytes


def test_ivf_ids_add_and_remove(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, _ = data
    ids = np.arange(len(vectors), dtype=np.int64) * 10  # ids need not be positions
    index = IVFDenseIndex.build(vectors[:4000], ids=ids[:4000])
    index.add(vectors[4000:], ids[4000:])
    assert (index.size, index.trained) == (len(vectors), 4000)
    rows, _ = index.search(vectors[5000], 1)
    assert rows.tolist() == [50_000]  # an added vector is found under its id
    assert index.remove(np.array([50_000, 123_456_789])) == 1
    assert 50_000 not in index.search(vectors[5000], 10)[0].tolist()
    np.testing.assert_array_equal(index.vectors_of(np.array([10, 40_000])), vectors[[1, 4000]])
    with pytest.raises(ValueError, match="ids of shape"):
        index.add(vectors[:2], ids[:3])


def test_the_sqlite_store_uses_ivf_above_its_threshold_and_persists_it(tmp_path: Path) -> None:
    from lamina.retrieval.derived.local import ApproximateRows, ExactRows
    from lamina.settings import Settings

    corpus = write_corpus(tmp_path / "corpus")
    settings = Settings(retrieval={"ann_threshold": 10})  # type: ignore[arg-type]
    index = Index(tmp_path / "idx", embedder=HashEmbedder(), settings=settings)
    index.ingest([corpus])
    assert isinstance(index.store.local.refresh().dense, ApproximateRows)  # type: ignore[attr-defined]
    hits = index.search("vector search", k=3, mode="dense", mmr_lambda=0.5)
    assert len(hits) == 3
    assert index.search("vector search", k=3, collection="default")

    reopened = Index(tmp_path / "idx", embedder=HashEmbedder(), settings=settings)
    assert [h.chunk.key for h in reopened.search("vector search", k=3, mode="dense")] == [
        h.chunk.key for h in index.search("vector search", k=3, mode="dense")
    ]
    assert reopened.store.local.builds == 0  # type: ignore[attr-defined]  # loaded, not rebuilt

    small = Index(tmp_path / "idx2", embedder=HashEmbedder())
    small.ingest([corpus])
    assert isinstance(small.store.local.refresh().dense, ExactRows)  # type: ignore[attr-defined]
