"""The in-memory kinds behind ``VectorIndex``: flat (exact, the default), HNSW and IVF (approximate).

Each wraps its FAISS index in an ``IndexIDMap2`` so vectors can be reconstructed by chunk id. ``remove`` deletes in
place for ``flat``; for ``hnsw`` (no deletion in the graph) and ``ivf`` (``IndexIDMap2.remove_ids`` renumbers its id
map while IVF keeps the old internal ids, which silently mislabels results) it rebuilds from the remaining vectors:
O(n) once per ``rag index`` run that deletes or changes documents, and always correct.

Under a small permitted set HNSW returns fewer than k results, so below ``EXACT_FALLBACK_FRACTION`` (or
``EXACT_FALLBACK_MIN_IDS``) it searches the permitted vectors exactly instead, with a filtered brute-force pass over
its flat storage. Filtered IVF probes every list, which is exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .vector_base import Selector, VectorIndex, strip

# Below this permitted fraction, HNSW under a filter comes up short (fewer than k, lower recall): search the
# permitted vectors exactly instead. Measured with `python -m eval.bench_filter` (d=384, k=10, M=32, efSearch=128):
# at 100k chunks filtered-HNSW recall is 0.46 (and 3 of 10 results missing) at 1% permitted, 0.86 at 2%, 0.97 at 5%
# (= its unfiltered 0.975); the exact fallback costs about what flat search with the filter does (0.3 ms at 1k
# permitted, ~4-8 ms at 10k) against ~13 ms for an unfiltered flat search of all 100k.
EXACT_FALLBACK_FRACTION = 0.05
# Smaller permitted sets are searched exactly whatever the fraction: 2k vectors cost well under 1 ms exactly,
# about one HNSW search, while HNSW recall at 1-2k permitted was 0.5-0.86 (10k chunks at 10%: 0.85).
EXACT_FALLBACK_MIN_IDS = 2000
HNSW_M = 32
HNSW_EF_SEARCH = 128
IVF_NLIST = 64  # at most; shrunk for small first batches (see IVFIndex._train)
IVF_NPROBE_FRACTION = 8  # unfiltered IVF probes nlist // 8 lists; filtered IVF probes all of them (exact)


class _IDMapped(VectorIndex):
    """What the three in-memory kinds share: an ``IndexIDMap2`` over one FAISS index."""

    def __init__(self, index) -> None:
        super().__init__(index.d)
        self._index = index

    @classmethod
    def new(cls, dimension: int, **params) -> VectorIndex:
        import faiss

        return cls(faiss.IndexIDMap2(cls._inner_index(dimension)))

    @classmethod
    def read(cls, path: Path, params: dict) -> VectorIndex:
        import faiss

        return cls.from_faiss(faiss.read_index(str(path)))

    @classmethod
    def from_faiss(cls, index) -> VectorIndex:
        import faiss

        # read_index returns the typed object that owns the index: re-wrapping it with downcast_index would let the
        # owner be freed. Only the inner index comes back untyped; type it for its search parameters.
        index.index = faiss.downcast_index(index.index)
        return cls(index)

    @classmethod
    def _inner_index(cls, dimension: int):
        raise NotImplementedError

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self._inner().is_trained:
            self._train(vectors)
        self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        # hnsw cannot delete from its graph, and IndexIDMap2.remove_ids mislabels ivf: rebuild from what remains.
        if len(ids) == 0:
            return
        keep = np.setdiff1d(self.ids(), np.asarray(ids, dtype=np.int64))
        fresh = type(self).new(self.dimension)
        fresh.add(keep, self.reconstruct(keep))
        self._index = fresh._index

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64)).astype(np.float32)

    def _search_all(self, queries: np.ndarray, k: int):
        scores, ids = self._index.search(queries, k)
        return strip(ids, scores)

    def _search_permitted(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        selector = Selector(allowed)
        scores, ids = self._index.search(queries, k, params=self._params(selector.sel))
        return strip(ids, scores)

    def _params(self, selector):
        import faiss

        return faiss.SearchParameters(sel=selector)

    def _train(self, vectors: np.ndarray) -> None:
        pass

    def _inner(self):
        import faiss

        return faiss.downcast_index(self._index.index)

    def _write(self, path: Path) -> None:
        import faiss

        faiss.write_index(self._index, str(path))


class FlatIndex(_IDMapped):
    """Exact inner product over every vector: the default, and exact under any filter."""

    kind = "flat"

    @classmethod
    def _inner_index(cls, dimension: int):
        import faiss

        return faiss.IndexFlatIP(dimension)

    def remove(self, ids: np.ndarray) -> None:
        import faiss

        if len(ids):
            self._index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))


class HNSWIndex(_IDMapped):
    """A graph index: approximate, with the exact fallback under small permitted sets."""

    kind = "hnsw"

    def __init__(self, index) -> None:
        super().__init__(index)
        # per instance, so the benchmark can compare HNSW with and without the exact fallback
        self.fallback_fraction = EXACT_FALLBACK_FRACTION
        self.fallback_min_ids = EXACT_FALLBACK_MIN_IDS
        self.exact_fallback = True

    @classmethod
    def _inner_index(cls, dimension: int):
        import faiss

        inner = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efSearch = HNSW_EF_SEARCH
        return inner

    def params(self) -> dict:
        return {"M": HNSW_M, "efSearch": HNSW_EF_SEARCH, "exact_below_fraction": self.fallback_fraction}

    def _search_permitted(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        if not self.exact_fallback:
            return super()._search_permitted(queries, k, allowed)
        if len(allowed) < max(self.fallback_fraction * self.ntotal, self.fallback_min_ids):
            return self._exact_over(queries, k, allowed)
        out_ids, out_scores = super()._search_permitted(queries, k, allowed)
        # Above the cut-off HNSW rarely comes up short, but "full whenever k chunks are readable" is a promise.
        for row, found in enumerate(out_ids):
            if len(found) < k:
                exact = self._exact_over(queries[row : row + 1], k, allowed)
                out_ids[row], out_scores[row] = exact[0][0], exact[1][0]
        return out_ids, out_scores

    def _params(self, selector):
        import faiss

        return faiss.SearchParametersHNSW(sel=selector, efSearch=HNSW_EF_SEARCH)

    def _exact_over(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        """Exact search among the permitted vectors: full whenever len(allowed) >= k.

        A brute-force pass over HNSW's own flat storage with the permitted set as a selector: FAISS computes only
        the permitted vectors' scores, without copying them out (measured faster than reconstruct + matmul).
        """
        import faiss

        storage = faiss.downcast_index(self._inner().storage)
        selector = Selector(allowed)
        translated = faiss.IDSelectorTranslated(self._index.id_map, selector.sel)  # positions -> chunk ids
        scores, positions = storage.search(queries, k, params=faiss.SearchParameters(sel=translated))
        id_map = faiss.vector_to_array(self._index.id_map)
        return strip(np.where(positions >= 0, id_map[np.maximum(positions, 0)], -1), scores)


class IVFIndex(_IDMapped):
    """Inverted lists over flat vectors: approximate unfiltered, exact filtered (every list probed)."""

    kind = "ivf"

    @classmethod
    def _inner_index(cls, dimension: int, nlist: int = IVF_NLIST):
        # Untrained until enough vectors arrive; see _train. nlist grows with the collection.
        import faiss

        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, nlist, faiss.METRIC_INNER_PRODUCT)

    def params(self) -> dict:
        inner = self._inner()
        return {"nlist": int(inner.nlist), "nprobe": int(inner.nprobe), "trained": bool(inner.is_trained)}

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if len(ids):
            self._inner().make_direct_map()
        return super().reconstruct(ids)

    def _train(self, vectors: np.ndarray) -> None:
        # IVF needs ~39 points per list to train well; shrink nlist for small first batches. An index built from
        # a tiny first batch keeps its few lists (still exact under a filter, where every list is probed).
        import faiss

        nlist = max(1, min(IVF_NLIST, len(vectors) // 39))
        inner = self._inner()
        if nlist != inner.nlist:
            inner = self._inner_index(self.dimension, nlist)
            self._index = faiss.IndexIDMap2(inner)
        inner.train(vectors)
        inner.nprobe = max(1, nlist // IVF_NPROBE_FRACTION)

    def _params(self, selector):
        import faiss

        return faiss.SearchParametersIVF(sel=selector, nprobe=self._inner().nlist)
