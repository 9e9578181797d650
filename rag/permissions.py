"""Who may read what, at query time: principals, cached permitted-id sets, filtered search, fail-closed checks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import numpy as np

from ingest.policy import EVERYONE
from ingest.vectors import VectorIndex

log = logging.getLogger("rag.permissions")


def query_principals(groups: dict[str, list[str]], user: str | None) -> frozenset[str]:
    """``user:NAME``, ``group:G`` for every group listing NAME, and ``*``; anonymous is ``*`` only."""
    if not user:
        return frozenset({EVERYONE})
    member_of = {f"group:{name}" for name, members in groups.items() if user in members}
    return frozenset({EVERYONE, f"user:{user}"} | member_of)


def readable(doc_principals: Iterable[str], principals: frozenset[str]) -> bool:
    return not principals.isdisjoint(doc_principals)


class PermittedIds:
    """Permitted chunk ids per (index generation, principal set). A new generation invalidates the cache."""

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: dict[tuple[str, frozenset[str]], np.ndarray | None] = {}
        self._generation: str | None = None
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, generation: str, principals: frozenset[str], compute: Callable[[], np.ndarray | None]):
        with self._lock:
            if generation != self._generation:
                self._entries.clear()
                self._generation = generation
            key = (generation, principals)
            if key not in self._entries:
                if len(self._entries) >= self._max:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = compute()
            return self._entries[key]


def filtered_search(
    vectors: VectorIndex, query_vec: np.ndarray, k: int, permitted_ids: np.ndarray | None
) -> list[tuple[int, float]]:
    """Exact top-k among the permitted ids (None: no filter), searched inside FAISS, never post-filtered."""
    ids, scores = vectors.search(np.asarray(query_vec, dtype=np.float32)[None, :], k, permitted_ids)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0])]


def fail_closed(
    hits: list[tuple[int, float]], chunk_principals: Callable[[int], frozenset[str]], principals: frozenset[str]
) -> list[tuple[int, float]]:
    """Re-check every hit against the catalog; anything unreadable is dropped and logged as an internal error."""
    kept = []
    for chunk_id, score in hits:
        if readable(chunk_principals(chunk_id), principals):
            kept.append((chunk_id, score))
        else:
            log.error("internal error: chunk %d passed the search filter but fails the permission check", chunk_id)
    return kept
