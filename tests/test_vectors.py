"""VectorIndex: add/remove/search/save/load, exact filtered top-k, the HNSW exact fallback, corrupt files."""

import numpy as np
import pytest

from ingest.errors import IndexCorruptError
from ingest.vectors import KINDS, VectorIndex

D = 16


def unit(rng, n, d=D):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(ids, vectors, query, k, allowed=None):
    mask = np.ones(len(ids), bool) if allowed is None else np.isin(ids, allowed)
    scores = vectors[mask] @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return ids[mask][order], scores[order]


def random_hnsw(seed: int, n: int):
    """An HNSW index of ``n`` random 32-d unit vectors with ids 0..n-1; also its ids, its vectors and the random
    generator, to draw queries and permitted sets from."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n, dtype=np.int64)
    vectors = unit(rng, n, 32)
    index = VectorIndex.create(32, "hnsw")
    index.add(ids, vectors)
    return index, ids, vectors, rng


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    return np.arange(100, 700, dtype=np.int64), unit(rng, 600), rng


@pytest.mark.parametrize("kind", KINDS)
def test_add_search_remove(kind, data):
    ids, vectors, _ = data
    index = VectorIndex.create(D, kind)
    index.add(ids, vectors)
    assert index.ntotal == 600 and index.kind == kind and index.dimension == D
    assert sorted(index.ids().tolist()) == ids.tolist()
    found, scores = index.search(vectors[5], 1)
    assert found[0].tolist() == [105] and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    index.remove(ids[:300])
    assert index.ntotal == 300
    assert sorted(index.ids().tolist()) == ids[300:].tolist()
    found, _ = index.search(vectors[400], 1)
    assert found[0].tolist() == [500]  # after removal the remaining ids still label the right vectors
    found, _ = index.search(vectors[5], 10)
    assert not set(found[0].tolist()) & set(ids[:300].tolist())
    assert np.allclose(index.reconstruct(np.array([500, 650])), vectors[[400, 550]], atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fraction", [0.005, 0.02, 0.1, 0.5, 1.0])
def test_filtered_search_is_the_exact_top_k_among_permitted(kind, fraction, data):
    ids, vectors, rng = data
    index = VectorIndex.create(D, kind)
    index.add(ids, vectors)
    allowed = np.sort(rng.choice(ids, max(1, int(fraction * len(ids))), replace=False))
    queries = unit(rng, 5)
    found, scores = index.search(queries, 10, allowed)
    for q, row_ids, row_scores in zip(queries, found, scores):
        expected_ids, expected_scores = brute_force(ids, vectors, q, 10, allowed)
        assert len(row_ids) == min(10, len(allowed))
        assert set(row_ids.tolist()) <= set(allowed.tolist())
        if kind != "hnsw" or len(allowed) < max(index.fallback_fraction * index.ntotal, index.fallback_min_ids):
            np.testing.assert_allclose(row_scores, expected_scores, atol=1e-5)  # exact (ties aside)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_permitted_set_and_empty_index(kind, data):
    ids, vectors, _ = data
    index = VectorIndex.create(D, kind)
    found, scores = index.search(vectors[:2], 5)
    assert [len(r) for r in found] == [0, 0] and [len(r) for r in scores] == [0, 0]
    index.add(ids, vectors)
    found, _ = index.search(vectors[:2], 5, np.array([], dtype=np.int64))
    assert [len(r) for r in found] == [0, 0]
    found, _ = index.search(vectors[0], 5, np.array([100, 99999]))  # an unknown id is ignored
    assert found[0].tolist() == [100]


def test_hnsw_fallback_keeps_results_full_under_a_small_permitted_set():
    index, ids, vectors, rng = random_hnsw(3, 3000)
    allowed = np.sort(rng.choice(ids, 30, replace=False))  # 1% permitted
    queries = unit(rng, 20, 32)
    found, scores = index.search(queries, 10, allowed)
    for q, row_ids, row_scores in zip(queries, found, scores):
        expected_ids, expected_scores = brute_force(ids, vectors, q, 10, allowed)
        assert row_ids.tolist() == expected_ids.tolist()
        np.testing.assert_allclose(row_scores, expected_scores, atol=1e-5)


def test_hnsw_fallback_with_ties_is_permitted_full_and_deterministic():  # 4 permitted: below the minimum, exact
    index = VectorIndex.create(4, "hnsw")
    vectors = np.tile(np.array([[1, 0, 0, 0]], dtype=np.float32), (400, 1))
    index.add(np.arange(400, dtype=np.int64), vectors)  # 4 of 400 permitted: fallback
    found, scores = index.search(vectors[0], 3, np.array([40, 7, 30, 2]))
    assert len(found[0]) == 3 and set(found[0].tolist()) <= {40, 7, 30, 2}
    np.testing.assert_allclose(scores[0], 1.0, atol=1e-6)
    assert index.search(vectors[0], 3, np.array([40, 7, 30, 2]))[0][0].tolist() == found[0].tolist()


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_round_trip(kind, data, tmp_path):
    ids, vectors, rng = data
    index = VectorIndex.create(D, kind)
    index.add(ids, vectors)
    index.remove(ids[:10])
    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert loaded.kind == kind and loaded.ntotal == 590 and loaded.dimension == D
    allowed = ids[50:80]
    queries = unit(rng, 3)
    for a, b in zip(index.search(queries, 5, allowed)[0], loaded.search(queries, 5, allowed)[0]):
        assert a.tolist() == b.tolist()
    loaded.add(np.array([5000]), unit(rng, 1))
    loaded.remove(np.array([5000, 150]))
    assert loaded.ntotal == 589


@pytest.mark.parametrize("content", [b"", b"not a faiss index at all", None])
def test_a_corrupt_file_raises_index_corrupt_error_naming_the_path(content, tmp_path, data):
    path = tmp_path / "vectors.faiss"
    if content is None:  # a truncated real index
        ids, vectors, _ = data
        index = VectorIndex.create(D)
        index.add(ids, vectors)
        index.save(path)
        path.write_bytes(path.read_bytes()[:1000])
    else:
        path.write_bytes(content)
    with pytest.raises(IndexCorruptError, match=str(path)):
        VectorIndex.load(path)


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ValueError, match="flat, hnsw, ivf"):
        VectorIndex.create(8, "annoy")


def test_hnsw_above_the_cut_off_is_still_full():
    index, ids, _, rng = random_hnsw(11, 2000)
    index.fallback_fraction, index.fallback_min_ids = 0.0, 0  # only the per-row safety net
    allowed = np.sort(rng.choice(ids, 12, replace=False))
    found, _ = index.search(unit(rng, 30, 32), 10, allowed)
    assert all(len(row) == 10 and set(row.tolist()) <= set(allowed.tolist()) for row in found)
