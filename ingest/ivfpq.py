"""IVF-PQ: the vector index kind for collections whose flat vectors no longer fit in memory.

Three parts, all keyed by chunk id:

- a staging flat index while the collection is smaller than ``TRAIN_AT`` vectors (exact, and nothing to train
  on yet); at ``TRAIN_AT`` the IVF-PQ trains on a sample of it and the staged vectors move in;
- ``IndexIVFPQ`` with ids stored in its inverted lists (48 bytes a vector at d=384, so 10M vectors take about
  0.5 GB): the candidate generator. Removal is in place (no renumbering, unlike an ``IndexIDMap2`` over IVF);
- an 8-bit scalar-quantised copy (``IndexScalarQuantizer`` QT_8bit, 384 bytes a vector) that re-ranks the
  ``k * k_factor`` candidates. PQ alone cannot order near-ties (recall@10 0.36 on the benchmark's vectors at 200k,
  0.85 after re-ranking 10x candidates).

The permission filter stays exact: the permitted set is an ``IDSelector`` inside the IVF scan, whose ``nprobe``
grows as the permitted fraction shrinks (``nprobe / fraction`` lists, so about as many permitted vectors are
scanned as unfiltered); a row left short is redone exhaustively, and below ``EXACT_BELOW_FRACTION`` every query
goes straight to the exhaustive pass: all permitted vectors scored on the scalar-quantised copy, so each row has
min(k, permitted) results.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .vector_base import Selector, VectorIndex, strip

NLIST = 1024  # ~10k vectors a list at 10M; searches probe NPROBE of them
NPROBE = 32
K_FACTOR = 16  # candidates re-ranked per result
TRAIN_PER_LIST = 64  # training sample: 64 vectors a list (FAISS wants 39 or more), 65k at nlist 1024
TRAIN_ITERATIONS = 10  # k-means iterations (FAISS's default 25 costs 2.5x for little on a sample this size)
# Below this permitted fraction the adaptive nprobe probes (nearly) every list anyway (NPROBE / NLIST = 3%): score
# the permitted vectors exhaustively on the scalar-quantised copy instead. `rag bench --only search --scale ...`
# (one thread, 2 shared cores): at 100k, p50 at 2% permitted 0.6 ms exhaustive vs 29 ms through the lists, at 10%
# 40 vs 1.4 ms; at 10M, recall@10 at 2% 0.99 exhaustive vs 0.93 through the lists (270 vs 241 ms p50), at 5% 0.98
# vs 0.85 but 417 vs 199 ms.
EXACT_BELOW_FRACTION = 0.03
STORE_SUFFIX = ".sq8"


class IVFPQIndex(VectorIndex):
    kind = "ivfpq"

    def __init__(self, dimension: int, settings: dict, staging=None, ivf=None, store=None) -> None:
        super().__init__(dimension)
        self.settings = settings
        self._staging, self._ivf, self._store = staging, ivf, store
        self.exact_below = EXACT_BELOW_FRACTION

    @classmethod
    def new(cls, dimension: int, **params) -> VectorIndex:
        import faiss

        settings = {
            "nlist": int(params.get("nlist", NLIST)),
            "m": int(params.get("m", _subquantizers(dimension))),
            "nbits": int(params.get("nbits", 8)),
            "nprobe": int(params.get("nprobe", NPROBE)),
            "k_factor": int(params.get("k_factor", K_FACTOR)),
        }
        return cls(dimension, settings, staging=faiss.IndexIDMap2(faiss.IndexFlatIP(dimension)))

    @classmethod
    def read(cls, path: Path, params: dict) -> VectorIndex:
        import faiss

        first = faiss.read_index(str(path))  # typed already, and the owner: never re-wrap it
        settings = {key: params[key] for key in ("nlist", "m", "nbits", "nprobe", "k_factor")}
        if not params.get("trained"):
            first.index = faiss.downcast_index(first.index)
            return cls(first.d, settings, staging=first)
        store = faiss.read_index(str(path) + STORE_SUFFIX)
        return cls(first.d, settings, ivf=first, store=store)

    @property
    def trained(self) -> bool:
        return self._ivf is not None

    @property
    def train_at(self) -> int:
        """Staged vectors that trigger training: ~39 per coarse list and per PQ centroid, FAISS's minimum."""
        return 39 * max(self.settings["nlist"], 1 << self.settings["nbits"])

    @property
    def ntotal(self) -> int:
        return int((self._store if self.trained else self._staging).ntotal)

    def ids(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array((self._store if self.trained else self._staging).id_map).astype(np.int64)

    def params(self) -> dict:
        return {**self.settings, "trained": self.trained, "train_at": self.train_at, "exact_below": self.exact_below}

    def train(self, sample: np.ndarray) -> None:
        """Train on a sample (the benchmark's path; ``add`` trains by itself at ``train_at`` staged vectors)."""
        import faiss

        sample = np.ascontiguousarray(sample, dtype=np.float32)
        s = self.settings
        ivf = faiss.IndexIVFPQ(
            faiss.IndexFlatIP(self.dimension),
            self.dimension,
            s["nlist"],
            s["m"],
            s["nbits"],
            faiss.METRIC_INNER_PRODUCT,
        )
        ivf.cp.niter = ivf.pq.cp.niter = TRAIN_ITERATIONS
        ivf.train(sample)
        ivf.nprobe = s["nprobe"]
        store = faiss.IndexScalarQuantizer(self.dimension, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        store.train(sample)
        staged_ids, staged = self.ids(), self._staged_vectors()
        self._ivf, self._store, self._staging = ivf, faiss.IndexIDMap2(store), None
        for start in range(0, len(staged_ids), 65536):  # shards, so the copy in flight stays small
            self.add(staged_ids[start : start + 65536], staged[start : start + 65536])

    def reserve(self, n: int) -> None:
        """Make room for ``n`` vectors in the 8-bit copy at once. Grown by doubling, its one array would pass
        through old + new copies (2.5 GB + 4.9 GB on the way to 10M vectors): past 8 GB at the peak."""
        import faiss

        store = faiss.downcast_index(self._store.index)
        size = store.codes.size()
        store.codes.resize(max(size, n * store.code_size))  # std::vector keeps the capacity when it shrinks
        store.codes.resize(size)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not self.trained:
            self._staging.add_with_ids(vectors, ids)
            if self._staging.ntotal >= self.train_at:
                staged = self._staged_vectors()
                pick = np.random.default_rng(0).permutation(len(staged))[: TRAIN_PER_LIST * self.settings["nlist"]]
                self.train(staged[np.sort(pick)])
            return
        self._ivf.add_with_ids(vectors, ids)
        self._store.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        import faiss

        if len(ids) == 0:
            return
        batch = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        if self.trained:
            self._ivf.remove_ids(batch)  # ids live in the lists: removal in place, nothing renumbered
            self._store.remove_ids(batch)
        else:
            self._staging.remove_ids(batch)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        source = self._store if self.trained else self._staging
        return source.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64)).astype(np.float32)

    # --- search -----------------------------------------------------------------------------------------------
    def _search_all(self, queries: np.ndarray, k: int):
        if not self.trained:
            scores, ids = self._staging.search(queries, k)
            return strip(ids, scores)
        return self._candidates_then_rerank(queries, k, None, self.settings["nprobe"])

    def _search_permitted(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        import faiss

        if not self.trained:
            selector = Selector(allowed)
            scores, ids = self._staging.search(queries, k, params=faiss.SearchParameters(sel=selector.sel))
            return strip(ids, scores)
        fraction = len(allowed) / max(1, self.ntotal)
        if fraction < self.exact_below:
            return self._exhaustive(queries, k, allowed)
        nprobe = min(self.settings["nlist"], math.ceil(self.settings["nprobe"] / fraction))
        out_ids, out_scores = self._candidates_then_rerank(queries, k, allowed, nprobe)
        for row, found in enumerate(out_ids):  # "full whenever k chunks are readable" is a promise
            if len(found) < k:
                exact = self._exhaustive(queries[row : row + 1], k, allowed)
                out_ids[row], out_scores[row] = exact[0][0], exact[1][0]
        return out_ids, out_scores

    def _candidates_then_rerank(self, queries: np.ndarray, k: int, allowed: np.ndarray | None, nprobe: int):
        import faiss

        selector = Selector(allowed) if allowed is not None else None
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        if selector is not None:
            params.sel = selector.sel
        _, candidates = self._ivf.search(queries, k * self.settings["k_factor"], params=params)
        known = np.unique(candidates[candidates >= 0])
        if len(known) == 0:
            return strip(candidates[:, :0], np.zeros((len(queries), 0), dtype=np.float32))
        decoded = self._store.reconstruct_batch(known)
        position = {int(c): i for i, c in enumerate(known)}
        out_ids, out_scores = [], []
        for query, row in zip(queries, candidates):
            row = row[row >= 0]
            scores = decoded[[position[int(c)] for c in row]] @ query
            order = np.lexsort((row, -scores))[:k]  # best first, ties by id
            out_ids.append(row[order].astype(np.int64))
            out_scores.append(scores[order].astype(np.float32))
        return out_ids, out_scores

    def _exhaustive(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        """Every permitted vector scored on the scalar-quantised copy: full whenever len(allowed) >= k."""
        import faiss

        selector = Selector(allowed)
        scores, ids = self._store.search(queries, k, params=faiss.SearchParameters(sel=selector.sel))
        return strip(ids, scores)

    # --- files ------------------------------------------------------------------------------------------------
    def _write(self, path: Path) -> None:
        import faiss

        if not self.trained:
            faiss.write_index(self._staging, str(path))
            return
        faiss.write_index(self._ivf, str(path))
        store_path = str(path) + STORE_SUFFIX
        faiss.write_index(self._store, store_path)
        fd = os.open(store_path, os.O_RDONLY)  # the generation's commit fsyncs vectors.faiss, not this one
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _staged_vectors(self) -> np.ndarray:
        import faiss

        flat = faiss.downcast_index(self._staging.index)
        return faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * self.dimension).reshape(-1, self.dimension).copy()


def _subquantizers(dimension: int) -> int:
    """About 8 dimensions a sub-quantiser (48 for 384-d), a divisor of d as PQ requires."""
    return max(m for m in range(1, max(1, dimension // 8) + 1) if dimension % m == 0)
