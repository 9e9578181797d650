"""The FAISS side of an index: vectors keyed by chunk id, with exact search inside a permitted-id set.

``flat`` (the default) is an ``IndexIDMap2`` over an exact inner-product index. ``hnsw`` and ``ivf`` are
approximate options for very large folders; under a small permitted set HNSW returns fewer than k results, so
below ``EXACT_FALLBACK_FRACTION`` we search the permitted vectors exactly instead (they are reconstructed by id).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import IndexCorruptError

KINDS = ("flat", "hnsw", "ivf")
EXACT_FALLBACK_FRACTION = 0.05  # below this permitted fraction, approximate search under a filter comes up short
HNSW_M = 32
HNSW_EF_SEARCH = 128


class VectorIndex:
    def __init__(self, index, kind: str) -> None:
        self._index = index
        self.kind = kind
        self.dimension = int(index.d)

    @classmethod
    def create(cls, dimension: int, kind: str = "flat") -> VectorIndex:
        import faiss

        if kind == "flat":
            inner = faiss.IndexFlatIP(dimension)
        elif kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = HNSW_EF_SEARCH
        elif kind == "ivf":
            # Untrained until enough vectors arrive; see add(). nlist grows with the collection.
            inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), 64, faiss.METRIC_INNER_PRODUCT)
        else:
            raise ValueError(f"unknown vector index kind {kind!r} (valid: {', '.join(KINDS)})")
        return cls(faiss.IndexIDMap2(inner), kind)

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
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        inner = self._inner()
        if not inner.is_trained:
            self._train(vectors)
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        import faiss

        if len(ids) == 0:
            return
        if self.kind == "hnsw":
            # HNSW cannot delete from its graph: rebuild from the remaining vectors.
            keep = np.setdiff1d(self.ids(), np.asarray(ids, dtype=np.int64))
            vectors = self.reconstruct(keep)
            fresh = VectorIndex.create(self.dimension, "hnsw")
            fresh.add(keep, vectors)
            self._index = fresh._index
            return
        self._index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.kind == "ivf":
            self._inner().make_direct_map()
        return np.vstack([self._index.reconstruct(int(i)) for i in ids]).astype(np.float32)

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Top-k ids and scores per query, exact among ``allowed_ids`` (None = all). Rows hold no -1 padding."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.ntotal == 0 or k <= 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            empty = [np.zeros(0, dtype=np.int64) for _ in queries]
            return empty, [np.zeros(0, dtype=np.float32) for _ in queries]
        if allowed_ids is not None and self.kind != "flat":
            if len(allowed_ids) < EXACT_FALLBACK_FRACTION * self.ntotal:
                return self._exact_over(queries, k, np.asarray(allowed_ids, dtype=np.int64))
        k = min(k, self.ntotal if allowed_ids is None else len(allowed_ids))
        params = None
        if allowed_ids is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
            params = self._params(selector)
        if params is None:
            scores, ids = self._index.search(queries, k)
        else:
            scores, ids = self._index.search(queries, k, params=params)
        return _strip(ids, scores)

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        import faiss

        try:
            index = faiss.read_index(str(path))
        except RuntimeError as err:
            raise IndexCorruptError(
                f"vector file {path} cannot be read ({str(err).splitlines()[0][:120]}); "
                "repair with `rag index PATH --rebuild`"
            ) from err
        if not isinstance(index, faiss.IndexIDMap2):
            index = faiss.downcast_index(index)
        inner = faiss.downcast_index(index.index)
        kind = (
            "hnsw"
            if isinstance(inner, faiss.IndexHNSWFlat)
            else "ivf"
            if isinstance(inner, faiss.IndexIVFFlat)
            else "flat"
        )
        loaded = cls(index, kind)
        loaded._index.index = inner  # keep a typed inner index for search parameters
        return loaded

    # --- internals ------------------------------------------------------------------------------------------
    def _inner(self):
        import faiss

        return faiss.downcast_index(self._index.index)

    def _train(self, vectors: np.ndarray) -> None:
        inner = self._inner()
        # IVF needs ~39 points per list to train well; shrink nlist for small first batches.
        nlist = max(1, min(inner.nlist, len(vectors) // 39))
        if nlist != inner.nlist:
            import faiss

            inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dimension), nlist, faiss.METRIC_INNER_PRODUCT)
            self._index = faiss.IndexIDMap2(inner)
        inner.train(vectors)
        inner.nprobe = max(1, nlist // 8)

    def _params(self, selector):
        import faiss

        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=HNSW_EF_SEARCH)
        if self.kind == "ivf":
            inner = self._inner()
            return faiss.SearchParametersIVF(sel=selector, nprobe=inner.nlist)
        return faiss.SearchParameters(sel=selector)

    def _exact_over(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        vectors = self.reconstruct(allowed)
        scores = queries @ vectors.T
        k = min(k, len(allowed))
        order = np.argsort(-scores, axis=1)[:, :k]
        return [allowed[row] for row in order], [scores[i, row] for i, row in enumerate(order)]


def _strip(ids: np.ndarray, scores: np.ndarray):
    out_ids, out_scores = [], []
    for row_ids, row_scores in zip(ids, scores):
        keep = row_ids >= 0
        out_ids.append(row_ids[keep].astype(np.int64))
        out_scores.append(row_scores[keep].astype(np.float32))
    return out_ids, out_scores
