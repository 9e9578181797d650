"""Retrievers for LangChain and LlamaIndex over ``rag.api.Index``, each bound to one user.

A vector store that filters by metadata after its nearest-neighbour search returns the user's share of the top
``fetch_k``: LangChain's FAISS filter returned 0 of 10 results when 2% of the chunks were readable. These retrievers
hand the framework docrag's own search instead, ranked inside the chunks the user may read, so the top-k is exact and
full whenever the user may read k chunks.
Optional extras: ``pip install "docrag[langchain]"``, ``pip install "docrag[llamaindex]"``.
"""

from __future__ import annotations

from pathlib import Path

# The result fields that travel as metadata; "text" is the document's content, "lead" never leaves rag.
METADATA_KEYS = ("source", "chunk_id", "score", "rank", "start", "end", "page", "heading")


def open_index(index):
    """An ``rag.api.Index`` from an Index or an index directory."""
    if isinstance(index, str | Path):
        from rag.api import Index

        return Index.open(index)
    return index


def search_hits(index, query: str, user: str | None, k: int) -> list[dict]:
    """docrag's permission-filtered top ``k`` for ``user`` (None: anonymous), as ``rag search --json`` rows."""
    return index.search(query, user=user, k=k)["results"]


def hit_metadata(hit: dict) -> dict:
    return {key: hit[key] for key in METADATA_KEYS if hit.get(key) is not None}


def missing_extra(framework: str, extra: str) -> ImportError:
    return ImportError(f"{framework} is not installed; install docrag's extra: pip install 'docrag[{extra}]'")
