"""A LangChain ``BaseRetriever`` over docrag, bound to one user (``pip install "docrag[langchain]"``).

    from rag.integrations.langchain import DocragRetriever

    retriever = DocragRetriever.from_index_dir(".rag", user="alice", k=5)
    docs = retriever.invoke("What is the per diem for Oslo?")  # Documents alice may read, best first

It returns what ``rag search --user alice`` would, as LangChain ``Document``s: the permission filter runs inside
the search.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import hit_metadata, missing_extra, open_index, search_hits

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import field_validator
except ImportError as err:  # pragma: no cover - depends on the environment
    raise missing_extra("LangChain (langchain-core)", "langchain") from err


class DocragRetriever(BaseRetriever):
    """The ``k`` chunks most relevant to a query among those ``user`` may read (None: anonymous), as Documents with
    ``source``, ``chunk_id``, ``score`` (and rank, offsets, page, heading) in their metadata."""

    index: Any  # rag.api.Index, or an index directory that is opened once
    user: str | None = None
    k: int = 4

    model_config = {"arbitrary_types_allowed": True}

    @field_validator("index", mode="before")
    @classmethod
    def _opened(cls, index):
        return open_index(index)

    @classmethod
    def from_index_dir(cls, index_dir: str | Path, user: str | None = None, k: int = 4, **options) -> DocragRetriever:
        return cls(index=Path(index_dir), user=user, k=k, **options)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = search_hits(self.index, query, self.user, self.k)
        return [Document(page_content=hit["text"], metadata=hit_metadata(hit), id=str(hit["chunk_id"])) for hit in hits]
