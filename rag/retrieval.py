"""Permission-aware retrieval over an index: rank inside the user's permitted ids, then re-check every hit.

The permitted-id set is computed from the catalog (each document's principals) and handed to FAISS, so the
top-k is exact among readable chunks and full whenever the user may read k chunks. Every hit is then checked
again against the catalog before its text leaves this module (fail closed).

Two modes. ``dense`` ranks by the cosine between query and chunk embeddings. ``hybrid`` (the default) also ranks the
chunks by BM25 over the catalog's FTS5 table and fuses the two rankings by reciprocal rank fusion: keywords find the
exact names, codes and numbers that a small embedder blurs, embeddings find paraphrases. Measured on the bundled
demo QA train split (141 answerable questions), the chunk holding the answer is in the top 5 for 92% of questions
with dense MiniLM search and 98% with hybrid search (docs/benchmarks.md#retrieval). Both candidate lists are drawn from
the permitted ids only, so hybrid results are as private and as full as dense ones; BM25 reads only the keyword tables
of the permission classes the user may read and pools its statistics over them, so its scores and order never depend
on other documents.
``SearchResult.score`` is the cosine in both modes (abstention thresholds are calibrated on it); hybrid results are
in fused order, so their scores need not decrease.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ingest.common import EmbedderMismatchError, UsageError
from ingest.embedding import Embedder, check_recorded_embedder, load_embedder
from ingest.store import OpenIndex, current_generation, open_index

from .permissions import PermittedIds, fail_closed, filtered_search, query_principals, readable
from .types import SearchResult

MODES = ("hybrid", "dense")
# The usual RRF constant (Cormack et al., 2009): 1/(60 + rank) falls slowly with rank, so a chunk both lists rank
# fairly high beats one that a single list ranks first.
RRF_K = 60
# Candidates drawn from each list per result wanted: an item ranked moderately in both lists can still win.
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 20


def _load_quietly(name: str | None) -> Embedder:
    return load_embedder(name, progress=False)


class Retriever:
    """Searches one index dir; reopens it when a new generation goes live, and caches permitted ids per user set."""

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder | str | None = None,
        mode: str = "hybrid",
        load: Callable[[str | None], Embedder] | None = None,
    ) -> None:
        """``embedder``: a loaded embedder, or the name to load (default: the index's own) with ``load``
        (default: ``ingest.embedding.load_embedder``; the CLI passes its factory, so tests can inject a fake)."""
        self.index_dir = Path(index_dir)
        self.mode = check_mode(mode)  # search()'s default, for callers that pass no mode (answer_question)
        self._index: OpenIndex | None = None
        self._permitted = PermittedIds()
        self._embedder_arg = embedder
        self._load = load or _load_quietly
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
                # Default to the embedder that built the index: a query must live in the same vector space. A model
                # path read from the index's own files is not loaded unless the user names it (docs/security.md).
                name = check_recorded_embedder(built_with, self.index_dir) if arg is None else arg
                self._embedder = self._load(name)
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

    def search(self, query: str, k: int = 5, user: str | None = None, mode: str | None = None) -> list[SearchResult]:
        """The ``k`` best chunks ``user`` may read; ``mode`` is "hybrid" or "dense" (None: this retriever's own)."""
        if k < 1:
            raise UsageError(f"-k must be at least 1, got {k}")
        mode = self.mode if mode is None else check_mode(mode)
        vector = self.embed_query(query)
        if mode == "dense":
            return self.search_vector(vector, k, user)
        return self._hybrid(query, vector, k, user)

    def embed_query(self, query: str) -> np.ndarray:
        if not query.strip():
            raise UsageError("the query is empty; give some words to search for")
        try:
            query.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 reach Python's argv as lone surrogates
            raise UsageError("the query is not valid UTF-8 text; check the terminal's encoding") from None
        return self.embedder.embed([query])[0]

    def search_vector(self, vector: np.ndarray, k: int, user: str | None = None) -> list[SearchResult]:
        """Dense search by a query vector."""
        index = self.index
        hits = filtered_search(index.vectors, vector, k, self.permitted_ids(user))
        return self._results(index, hits, user)

    def _hybrid(self, query: str, vector: np.ndarray, k: int, user: str | None) -> list[SearchResult]:
        index = self.index
        permitted = self.permitted_ids(user)
        if permitted is not None and len(permitted) == 0:
            return []  # nothing readable: skip reading every keyword match only to reject it
        n = max(CANDIDATES_PER_RESULT * k, MIN_CANDIDATES)
        # Both lists come from inside the permitted set, and dense alone has min(n, readable) >= min(k, readable)
        # ids: the fused top-k is full whenever the user may read k chunks, however few words match.
        dense = filtered_search(index.vectors, vector, n, permitted)
        principals = self.principals(user)
        lexical = index.catalog.lexical_search(
            query,
            n,
            readable=None if permitted is None else lambda doc_principals: readable(doc_principals, principals),
        )
        fused = reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in lexical]])[:k]
        cosine = dict(dense)
        missing = np.asarray(sorted(set(fused) - cosine.keys()), dtype=np.int64)
        if len(missing):  # keyword-only hits: their exact cosine, searched among just those ids
            cosine.update(filtered_search(index.vectors, vector, len(missing), missing))
        return self._results(index, [(i, cosine[i]) for i in fused if i in cosine], user)

    def _results(self, index: OpenIndex, hits: list[tuple[int, float]], user: str | None) -> list[SearchResult]:
        """Fail-closed re-check and catalog lookup, keeping the order given."""
        hits = fail_closed(hits, index.catalog.principals_of_chunk, self.principals(user))
        records = index.catalog.chunks_by_id(chunk_id for chunk_id, _ in hits)
        results = []
        for chunk_id, score in hits:
            record = records.get(chunk_id)
            if record is None:  # verify() makes this impossible; never fabricate a result
                continue
            results.append(SearchResult.from_record(len(results) + 1, score, record))
        return results

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"unknown retrieval mode {mode!r} (valid: {', '.join(MODES)})")
    return mode


def reciprocal_rank_fusion(rankings: list[list[int]], constant: int = RRF_K) -> list[int]:
    """Ids by the sum over rankings of 1 / (constant + rank), best first; ties keep first-seen order."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (constant + rank)
    return sorted(scores, key=lambda item: -scores[item])  # stable sort: ties stay in insertion order
