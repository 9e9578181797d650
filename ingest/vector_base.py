"""The interface every vector index kind implements, and what the kinds share (the FAISS id selector, result
stripping, the description file beside the vectors).

The kinds subclass ``VectorIndex`` here and register themselves by their ``kind`` name as their class is defined;
``ingest.vectors`` imports them all, so ``VectorIndex.create`` and ``VectorIndex.load`` (imported from
``ingest.vectors``) know every kind. This module imports none of them: the dependency goes one way, kinds -> base.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from .errors import IndexCorruptError, IndexWriteError


class VectorIndex:
    """Vectors keyed by int64 chunk id. Subclasses implement one FAISS index kind each."""

    kind: ClassVar[str] = ""
    # Every kind by its name, filled by __init_subclass__ (ingest.vectors imports all the kinds).
    kinds: ClassVar[dict[str, type[VectorIndex]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            VectorIndex.kinds[cls.kind] = cls

    def __init__(self, dimension: int) -> None:
        self.dimension = int(dimension)

    # --- construction -----------------------------------------------------------------------------------------
    @classmethod
    def create(cls, dimension: int, kind: str = "flat", **params) -> VectorIndex:
        return _kind_class(kind).new(dimension, **params)

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        path = Path(path)
        described = sidecar(path)
        try:
            if described is not None:
                return _kind_class(described.get("kind", "")).read(path, described.get("params", {}))
            return _legacy_read(path)
        except (RuntimeError, OSError, ValueError) as err:
            raise IndexCorruptError(
                f"vector file {path} cannot be read ({str(err).splitlines()[0][:120] if str(err) else err!r}); "
                "repair with `rag index PATH --rebuild`"
            ) from err

    @classmethod
    def new(cls, dimension: int, **params) -> VectorIndex:
        raise NotImplementedError

    @classmethod
    def read(cls, path: Path, params: dict) -> VectorIndex:
        raise NotImplementedError

    # --- the interface ----------------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        raise NotImplementedError

    def ids(self) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict:
        """The kind's parameters, as ``rag status`` shows them."""
        return {}

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def remove(self, ids: np.ndarray) -> None:
        raise NotImplementedError

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (each must be in the index), shape (len(ids), d); lossy for IVF-PQ."""
        raise NotImplementedError

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Top-k ids and scores per query among ``allowed_ids`` (None = all). Rows hold no -1 padding.

        A row has min(k, permitted) results whatever the kind. Permitted ids not in the index are ignored.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.ntotal == 0 or k <= 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return [np.zeros(0, dtype=np.int64) for _ in queries], [np.zeros(0, dtype=np.float32) for _ in queries]
        if allowed_ids is None:
            return self._search_all(queries, min(k, self.ntotal))
        allowed_ids = np.ascontiguousarray(allowed_ids, dtype=np.int64)
        return self._search_permitted(queries, min(k, self.ntotal, len(allowed_ids)), allowed_ids)

    def save(self, path: Path) -> None:
        path = Path(path)
        try:
            self._write(path)
        except RuntimeError as err:  # FAISS reports a short write (a full disk) as a RuntimeError with C++ context
            last = re.search(r"\(([^()]*)\)\s*$", str(err))
            reason = last.group(1) if last else str(err).splitlines()[-1][-160:]
            raise IndexWriteError(
                f"cannot write the vector file {path} ({reason}); free some space and run again, the previous "
                "index is intact"
            ) from err
        _write_durably(sidecar_path(path), json.dumps({"kind": self.kind, "params": self.params()}, indent=1))

    # --- what each kind implements ----------------------------------------------------------------------------
    def _search_all(self, queries: np.ndarray, k: int):
        raise NotImplementedError

    def _search_permitted(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        raise NotImplementedError

    def _write(self, path: Path) -> None:
        raise NotImplementedError


class Selector:
    """A FAISS ``IDSelector`` for a set of ids, holding the memory it points into for as long as it lives.

    A bitmap (measured as fast as ``IDSelectorBatch`` at 100k to search, and much cheaper to build for large
    sets), or a hash set when the ids are too sparse for one.
    """

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


def strip(ids: np.ndarray, scores: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """FAISS result arrays -> per-row lists without the -1 padding."""
    out_ids, out_scores = [], []
    for row_ids, row_scores in zip(ids, scores):
        keep = row_ids >= 0
        out_ids.append(row_ids[keep].astype(np.int64))
        out_scores.append(row_scores[keep].astype(np.float32))
    return out_ids, out_scores


def sidecar_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".json")


def sidecar(path: Path) -> dict | None:
    try:
        return json.loads(sidecar_path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise IndexCorruptError(
            f"vector description {sidecar_path(path)} cannot be read ({err}); repair with `rag index PATH --rebuild`"
        ) from err


def _kind_class(kind: str) -> type[VectorIndex]:
    if kind not in VectorIndex.kinds:
        raise ValueError(f"unknown vector index kind {kind!r} (valid: {', '.join(sorted(VectorIndex.kinds))})")
    return VectorIndex.kinds[kind]


def _legacy_read(path: Path) -> VectorIndex:
    """An index saved before the description file: its FAISS type names the kind."""
    import faiss

    index = faiss.read_index(str(path))
    inner = faiss.downcast_index(index.index)
    kind = "hnsw" if isinstance(inner, faiss.IndexHNSWFlat) else "ivf" if isinstance(inner, faiss.IndexIVF) else "flat"
    return _kind_class(kind).from_faiss(index)


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
