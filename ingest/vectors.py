"""The FAISS side of an index: vectors keyed by chunk id, with exact permission filtering inside the search.

One interface, ``VectorIndex`` (defined in ``ingest.vector_base``, re-exported here), and one small class per kind
(``ingest.vector_kinds``: flat, HNSW, IVF; ``ingest.ivfpq``: IVF-PQ), which this module imports so that
``VectorIndex.create(d, kind)`` and ``VectorIndex.load(path)`` can pick the class; callers only ever see
``add / remove / search / reconstruct / ids / save / params``.

``search`` returns per-query lists (``list[np.ndarray]``) of ids and scores with FAISS's -1 padding removed, so a
row is shorter than k exactly when fewer than k vectors are permitted: every kind keeps the filter exact (the
permitted set goes into FAISS as an ``IDSelector``, and approximate kinds fall back to an exhaustive pass over the
permitted vectors below a selectivity measured by ``eval.bench_filter`` / ``eval.bench_search``).

Beside ``vectors.faiss`` each save writes ``vectors.faiss.json``: the kind and its parameters (what ``rag status``
shows, and what tells an IVF-PQ index that is still too small to train from a flat one). Indexes saved before it
existed are recognised by their FAISS type.
"""

from __future__ import annotations

from pathlib import Path

from .common import UsageError
from .ivfpq import IVFPQIndex
from .vector_base import VectorIndex
from .vector_kinds import FlatIndex, HNSWIndex, IVFIndex

# Importing the kinds registers them with VectorIndex (VectorIndex.kinds), which create and load pick from.
KINDS = tuple(cls.kind for cls in (FlatIndex, HNSWIndex, IVFIndex, IVFPQIndex))  # flat, hnsw, ivf, ivfpq

__all__ = ["KINDS", "VectorIndex", "check_kind"]


def check_kind(live: VectorIndex | None, asked: str | None, index_dir: Path) -> None:
    """Asking for another kind than the live index's would be silently ignored by an incremental run: refuse."""
    if live is not None and asked is not None and asked != live.kind:
        raise UsageError(
            f"index at {index_dir} is a {live.kind!r} vector index, not {asked!r}; "
            f"changing it re-embeds everything: add --rebuild (or drop --vector-index to keep {live.kind!r})"
        )
