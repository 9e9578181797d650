"""Permission-aware retrieval over an index: embed the query, search inside the user's permitted ids, re-check.

The permitted-id set is computed from the catalog (each document's principals) and handed to FAISS, so the
top-k is exact among readable chunks and full whenever the user may read k chunks. Every hit is then checked
again against the catalog before its text leaves this module (fail closed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.embedding import Embedder, load_embedder
from ingest.errors import EmbedderMismatchError, UsageError
from ingest.store import OpenIndex, current_generation, open_index

from .permissions import PermittedIds, fail_closed, filtered_search, query_principals, readable
from .types import SearchResult


class Retriever:
    """Searches one index dir; reopens it when a new generation goes live, and caches permitted ids per user set."""

    def __init__(self, index_dir: Path, embedder: Embedder | str | None = None) -> None:
        self.index_dir = Path(index_dir)
        self._index: OpenIndex | None = None
        self._permitted = PermittedIds()
        self._embedder_arg = embedder
        self._embedder: Embedder | None = None
        self.index  # noqa: B018 - open now, so a missing or corrupt index fails before any model loads

    @property
    def index(self) -> OpenIndex:
        generation = current_generation(self.index_dir)
        if self._index is None or generation != self._index.generation:
            if self._index is not None:
                self._index.close()
            self._index = open_index(self.index_dir)
        return self._index

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            built_with = self.index.meta("embedder")
            arg = self._embedder_arg
            if arg is None or isinstance(arg, str):
                # Default to the embedder that built the index: a query must live in the same vector space.
                name = built_with if arg is None else arg
                self._embedder = load_embedder(name, progress=False)
            else:
                self._embedder = arg
            if self._embedder.name != built_with:
                raise EmbedderMismatchError(
                    f"index at {self.index_dir} was built with embedder {built_with!r}, not {self._embedder.name!r}; "
                    f"search with --embedder {built_with} (or leave --embedder out)"
                )
        return self._embedder

    def principals(self, user: str | None) -> frozenset[str]:
        return query_principals(self.index.meta("groups", {}) or {}, user)

    def permitted_ids(self, user: str | None) -> np.ndarray | None:
        """Sorted chunk ids ``user`` may read, or None when every chunk is readable (no filter needed)."""
        index = self.index
        principals = self.principals(user)

        def compute() -> np.ndarray | None:
            pairs = index.catalog.chunk_principals()
            allowed = [chunk_id for chunk_id, doc_principals in pairs if readable(doc_principals, principals)]
            if len(allowed) == len(pairs):
                return None
            return np.asarray(sorted(allowed), dtype=np.int64)

        return self._permitted.get(index.generation, principals, compute)

    def search(self, query: str, k: int = 5, user: str | None = None) -> list[SearchResult]:
        if k < 1:
            raise UsageError(f"-k must be at least 1, got {k}")
        vector = self.embed_query(query)
        return self.search_vector(vector, k, user)

    def embed_query(self, query: str) -> np.ndarray:
        if not query.strip():
            raise UsageError("the query is empty; give some words to search for")
        return self.embedder.embed([query])[0]

    def search_vector(self, vector: np.ndarray, k: int, user: str | None = None) -> list[SearchResult]:
        index = self.index
        principals = self.principals(user)
        hits = filtered_search(index.vectors, vector, k, self.permitted_ids(user))
        hits = fail_closed(hits, index.catalog.principals_of_chunk, principals)
        records = index.catalog.chunks_by_id(chunk_id for chunk_id, _ in hits)
        results = []
        for chunk_id, score in hits:
            record = records.get(chunk_id)
            if record is None:  # verify() makes this impossible; never fabricate a result
                continue
            results.append(
                SearchResult(
                    rank=len(results) + 1,
                    score=round(float(score), 6),
                    source=record.source,
                    chunk_id=int(chunk_id),
                    text=record.text,
                    start=record.start,
                    end=record.end,
                    page=record.page,
                    heading=record.heading,
                )
            )
        return results

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
