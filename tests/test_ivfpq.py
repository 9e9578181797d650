"""IVF-PQ: staging below the training size, training on a sample, in-place removal, exact filtering, save/load."""

import numpy as np
import pytest

from ingest.common import UsageError
from ingest.vectors import VectorIndex, check_kind

D = 16
SMALL = {"nlist": 8, "m": 8, "nbits": 4, "nprobe": 2, "k_factor": 8}  # trains at 39 * 16 = 624 vectors


def unit(rng, n, d=D):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(ids, vectors, query, k, allowed=None):
    mask = np.ones(len(ids), bool) if allowed is None else np.isin(ids, allowed)
    order = np.argsort(-(vectors[mask] @ query), kind="stable")[:k]
    return ids[mask][order]


@pytest.fixture
def trained():
    rng = np.random.default_rng(5)
    ids = np.arange(1000, 3000, dtype=np.int64)
    vectors = unit(rng, 2000)
    index = VectorIndex.create(D, "ivfpq", **SMALL)
    for start in range(0, 2000, 256):  # as rag index adds: one embedding batch at a time
        index.add(ids[start : start + 256], vectors[start : start + 256])
    return index, ids, vectors, rng


def test_small_collections_stay_exact_until_the_training_size():
    rng = np.random.default_rng(1)
    index = VectorIndex.create(D, "ivfpq", **SMALL)
    vectors = unit(rng, 600)
    index.add(np.arange(600), vectors)
    assert not index.params()["trained"] and index.params()["train_at"] == 624
    found, scores = index.search(vectors[3], 1)
    assert found[0].tolist() == [3] and scores[0][0] == pytest.approx(1.0, abs=1e-5)


def test_trains_at_the_training_size_and_keeps_every_vector(trained):
    index, ids, vectors, _ = trained
    assert index.params()["trained"] and index.ntotal == 2000
    assert sorted(index.ids().tolist()) == ids.tolist()
    found, _ = index.search(vectors[:20], 1)
    assert np.mean([row[0] == i for row, i in zip(found, ids[:20])]) >= 0.9  # a vector finds itself
    assert np.abs(index.reconstruct(ids[:5]) - vectors[:5]).max() < 0.05  # the 8-bit copy is close


def test_remove_is_in_place_and_never_mislabels(trained):
    index, ids, vectors, _ = trained
    index.remove(ids[:1000])
    assert index.ntotal == 1000 and sorted(index.ids().tolist()) == ids[1000:].tolist()
    found, _ = index.search(vectors[1500], 1)
    assert found[0].tolist() == [ids[1500]]
    found, _ = index.search(vectors[:10], 10)
    assert not set(np.concatenate(found).tolist()) & set(ids[:1000].tolist())


@pytest.mark.parametrize("fraction", [0.005, 0.03, 0.1, 0.5])
def test_filtered_rows_are_full_and_only_permitted(trained, fraction):
    index, ids, vectors, rng = trained
    allowed = np.sort(rng.choice(ids, max(1, int(fraction * len(ids))), replace=False))
    queries = unit(rng, 10)
    found, scores = index.search(queries, 10, allowed)
    for q, row, row_scores in zip(queries, found, scores):
        assert len(row) == min(10, len(allowed)) and set(row.tolist()) <= set(allowed.tolist())
        assert list(row_scores) == sorted(row_scores, reverse=True)
        if fraction < index.exact_below:  # exhaustive on the 8-bit copy: the exact top-k up to quantisation
            assert len(set(row.tolist()) & set(brute_force(ids, vectors, q, 10, allowed).tolist())) >= 8


def test_save_and_load_round_trip_keeps_kind_and_parameters(trained, tmp_path):
    index, ids, vectors, rng = trained
    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert loaded.kind == "ivfpq" and loaded.params() == index.params()
    allowed = ids[::7]
    queries = unit(rng, 4)
    for a, b in zip(index.search(queries, 5, allowed)[0], loaded.search(queries, 5, allowed)[0]):
        assert a.tolist() == b.tolist()
    loaded.add(np.array([9]), unit(rng, 1))
    assert loaded.ntotal == 2001


def test_an_untrained_ivfpq_loads_as_ivfpq_not_flat(tmp_path):
    index = VectorIndex.create(D, "ivfpq", **SMALL)
    index.add(np.arange(10), unit(np.random.default_rng(0), 10))
    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert loaded.kind == "ivfpq" and loaded.ntotal == 10 and not loaded.params()["trained"]


def test_asking_for_another_kind_names_rebuild(tmp_path):
    live = VectorIndex.create(D, "hnsw")
    check_kind(live, "hnsw", tmp_path)
    check_kind(live, None, tmp_path)
    with pytest.raises(UsageError, match="--rebuild"):
        check_kind(live, "ivfpq", tmp_path)
