"""The FAISS side of an index: vectors keyed by chunk id, with exact permission filtering inside the search.

One interface, ``VectorIndex``, and one small class per kind (``ingest.vector_kinds``: flat, HNSW, IVF;
``ingest.ivfpq``: IVF-PQ). ``VectorIndex.create(d, kind)`` and ``VectorIndex.load(path)`` pick the class; callers
only ever see ``add / remove / search / reconstruct / ids / save / params``.

``search`` returns per-query lists (``list[np.ndarray]``) of ids and scores with FAISS's -1 padding removed, so a
row is shorter than k exactly when fewer than k vectors are permitted: every kind keeps the filter exact (the
permitted set goes into FAISS as an ``IDSelector``, and approximate kinds fall back to an exhaustive pass over the
permitted vectors below a selectivity measured by ``eval.bench_filter`` / ``eval.bench_search``).

Beside ``vectors.faiss`` each save writes ``vectors.faiss.json``: the kind and its parameters (what ``rag status``
shows, and what tells an IVF-PQ index that is still too small to train from a flat one). Indexes saved before it
existed are recognised by their FAISS type.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from .common import UsageError
from .errors import IndexCorruptError, IndexWriteError

KINDS = ("flat", "hnsw", "ivf", "ivfpq")


class VectorIndex:
    """Vectors keyed by int64 chunk id. Subclasses implement one FAISS index kind each."""

    kind: ClassVar[str] = ""

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


def check_kind(live: VectorIndex | None, asked: str | None, index_dir: Path) -> None:
    """Asking for another kind than the live index's would be silently ignored by an incremental run: refuse."""
    if live is not None and asked is not None and asked != live.kind:
        raise UsageError(
            f"index at {index_dir} is a {live.kind!r} vector index, not {asked!r}; "
            f"changing it re-embeds everything: add --rebuild (or drop --vector-index to keep {live.kind!r})"
        )


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
    from .ivfpq import IVFPQIndex
    from .vector_kinds import FlatIndex, HNSWIndex, IVFIndex

    classes = {c.kind: c for c in (FlatIndex, HNSWIndex, IVFIndex, IVFPQIndex)}
    if kind not in classes:
        raise ValueError(f"unknown vector index kind {kind!r} (valid: {', '.join(KINDS)})")
    return classes[kind]


def _legacy_read(path: Path) -> VectorIndex:
    """An index saved before the description file: its FAISS type names the kind."""
    import faiss

    from .vector_kinds import FlatIndex, HNSWIndex, IVFIndex

    index = faiss.read_index(str(path))
    inner = faiss.downcast_index(index.index)
    kind = (
        HNSWIndex
        if isinstance(inner, faiss.IndexHNSWFlat)
        else IVFIndex
        if isinstance(inner, faiss.IndexIVF)
        else FlatIndex
    )
    return kind.from_faiss(index)


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
