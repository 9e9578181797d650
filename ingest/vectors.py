"""The FAISS side of an index: vectors keyed by chunk id, with exact search inside a permitted-id set.

``flat`` (the default) is an ``IndexIDMap2`` over an exact inner-product index. ``hnsw`` and ``ivf`` are
approximate options for very large folders; under a small permitted set HNSW returns fewer than k results, so
below ``EXACT_FALLBACK_FRACTION`` (or ``EXACT_FALLBACK_MIN_IDS``) we search the permitted vectors exactly instead,
with a filtered brute-force pass over HNSW's flat storage.

Every kind is wrapped in an ``IndexIDMap2`` so that vectors can be reconstructed by chunk id. ``remove`` deletes in
place for ``flat``; for ``hnsw`` (no deletion in the graph) and ``ivf`` (``IndexIDMap2.remove_ids`` renumbers its id
map while IVF keeps the old internal ids, which silently mislabels results) it rebuilds from the remaining vectors:
O(n) once per ``rag index`` run that deletes or changes documents, and always correct.

``search`` returns per-query lists (``list[np.ndarray]``) of ids and scores with FAISS's -1 padding removed, so a
row is shorter than k exactly when fewer than k vectors are permitted. The permitted set reaches FAISS as an
``IDSelectorBitmap`` (measured as fast as ``IDSelectorBatch`` at 100k to search, and much cheaper to build for large
sets) inside ``SearchParameters``; ``IDSelectorBatch`` is used when the ids are too sparse for a bitmap.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import IndexCorruptError, IndexWriteError

KINDS = ("flat", "hnsw", "ivf")
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
IVF_NLIST = 64  # at most; shrunk for small first batches (see _train)
IVF_NPROBE_FRACTION = 8  # unfiltered IVF probes nlist // 8 lists; filtered IVF probes all of them (exact)


class VectorIndex:
    def __init__(self, index, kind: str) -> None:
        self._index = index
        self.kind = kind
        self.dimension = int(index.d)
        # per instance, so the benchmark can compare HNSW with and without the exact fallback
        self.fallback_fraction = EXACT_FALLBACK_FRACTION
        self.fallback_min_ids = EXACT_FALLBACK_MIN_IDS
        self.exact_fallback = True

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
            inner = _ivf(dimension, IVF_NLIST)
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
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.kind == "flat":
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
            return
        # hnsw cannot delete from its graph, and IndexIDMap2.remove_ids mislabels ivf: rebuild from what remains.
        keep = np.setdiff1d(self.ids(), ids)
        vectors = self.reconstruct(keep)
        fresh = VectorIndex.create(self.dimension, self.kind)
        fresh.add(keep, vectors)
        self._index = fresh._index

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (each must be in the index), shape (len(ids), d)."""
        if len(ids) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.kind == "ivf":
            self._inner().make_direct_map()
        return self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64)).astype(np.float32)

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Top-k ids and scores per query, exact among ``allowed_ids`` (None = all). Rows hold no -1 padding.

        ``flat`` and filtered ``ivf`` (all lists probed) are exact; ``hnsw`` is approximate, and exact below the
        fallback fraction. Permitted ids that are not in the index are ignored.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.ntotal == 0 or k <= 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            empty = [np.zeros(0, dtype=np.int64) for _ in queries]
            return empty, [np.zeros(0, dtype=np.float32) for _ in queries]
        if allowed_ids is not None:
            allowed_ids = np.ascontiguousarray(allowed_ids, dtype=np.int64)
            fallback = self.kind == "hnsw" and self.exact_fallback
            if fallback and len(allowed_ids) < max(self.fallback_fraction * self.ntotal, self.fallback_min_ids):
                return self._exact_over(queries, k, allowed_ids)
        k = min(k, self.ntotal if allowed_ids is None else len(allowed_ids))
        if allowed_ids is None:
            scores, ids = self._index.search(queries, k)
        else:
            selector = Selector(allowed_ids)
            scores, ids = self._index.search(queries, k, params=self._params(selector.sel))
        out_ids, out_scores = _strip(ids, scores)
        if allowed_ids is not None and self.kind == "hnsw" and self.exact_fallback:
            # Above the cut-off HNSW rarely comes up short, but "full whenever k chunks are readable" is a promise.
            for row, found in enumerate(out_ids):
                if len(found) < k:
                    exact = self._exact_over(queries[row : row + 1], k, allowed_ids)
                    out_ids[row], out_scores[row] = exact[0][0], exact[1][0]
        return out_ids, out_scores

    def save(self, path: Path) -> None:
        import faiss

        try:
            faiss.write_index(self._index, str(path))
        except RuntimeError as err:  # FAISS reports a short write (a full disk) as a RuntimeError with C++ context
            last = re.search(r"\(([^()]*)\)\s*$", str(err))
            reason = last.group(1) if last else str(err).splitlines()[-1][-160:]
            raise IndexWriteError(
                f"cannot write the vector file {path} ({reason}); free some space and run again, the previous "
                "index is intact"
            ) from err

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
        # IVF needs ~39 points per list to train well; shrink nlist for small first batches. An index built from
        # a tiny first batch keeps its few lists (still exact under a filter, where every list is probed).
        nlist = max(1, min(IVF_NLIST, len(vectors) // 39))
        inner = self._inner()
        if nlist != inner.nlist:
            import faiss

            inner = _ivf(self.dimension, nlist)
            self._index = faiss.IndexIDMap2(inner)
        inner.train(vectors)
        inner.nprobe = max(1, nlist // IVF_NPROBE_FRACTION)

    def _params(self, selector):
        import faiss

        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=HNSW_EF_SEARCH)
        if self.kind == "ivf":
            inner = self._inner()
            return faiss.SearchParametersIVF(sel=selector, nprobe=inner.nlist)
        return faiss.SearchParameters(sel=selector)

    def _exact_over(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        """Exact search among the permitted vectors of an HNSW index: full whenever len(allowed) >= k.

        A brute-force pass over HNSW's own flat storage with the permitted set as a selector: FAISS computes only
        the permitted vectors' scores, without copying them out (measured faster than reconstruct + matmul).
        """
        import faiss

        storage = faiss.downcast_index(self._inner().storage)
        selector = Selector(allowed)
        translated = faiss.IDSelectorTranslated(self._index.id_map, selector.sel)  # positions -> chunk ids
        k = min(k, len(allowed), self.ntotal)
        scores, positions = storage.search(queries, k, params=faiss.SearchParameters(sel=translated))
        id_map = faiss.vector_to_array(self._index.id_map)
        ids = np.where(positions >= 0, id_map[np.maximum(positions, 0)], -1)
        return _strip(ids, scores)


class Selector:
    """A FAISS ``IDSelector`` for a set of ids, holding the memory it points into for as long as it lives."""

    BITMAP_MAX_BYTES = 64 << 20  # ids up to ~537M as a bitmap; sparser (or negative) ids use a hash set

    def __init__(self, ids: np.ndarray) -> None:
        import faiss

        ids = np.ascontiguousarray(ids, dtype=np.int64)
        top = int(ids.max()) + 1 if len(ids) else 1
        if len(ids) and ids.min() >= 0 and top <= self.BITMAP_MAX_BYTES * 8:
            bits = np.zeros(top, dtype=bool)
            bits[ids] = True
            self._keep = np.packbits(bits, bitorder="little")
            self.sel = faiss.IDSelectorBitmap(len(self._keep), faiss.swig_ptr(self._keep))  # n in bytes
        else:
            self._keep = ids
            self.sel = faiss.IDSelectorBatch(ids)


def _ivf(dimension: int, nlist: int):
    import faiss

    return faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, nlist, faiss.METRIC_INNER_PRODUCT)


def _strip(ids: np.ndarray, scores: np.ndarray):
    out_ids, out_scores = [], []
    for row_ids, row_scores in zip(ids, scores):
        keep = row_ids >= 0
        out_ids.append(row_ids[keep].astype(np.int64))
        out_scores.append(row_scores[keep].astype(np.float32))
    return out_ids, out_scores
