"""A LlamaIndex ``BaseRetriever`` over docrag, bound to one user (``pip install "docrag[llamaindex]"``).

    from rag.integrations.llamaindex import DocragRetriever

    retriever = DocragRetriever.from_index_dir(".rag", user="alice", k=5)
    nodes = retriever.retrieve("What is the per diem for Oslo?")  # NodeWithScore, best first

It returns what ``rag search --user alice`` would, as LlamaIndex nodes: the permission filter runs inside
the search.
"""

from __future__ import annotations

from pathlib import Path

from . import hit_metadata, missing_extra, open_index, search_hits

try:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as err:  # pragma: no cover - depends on the environment
    raise missing_extra("LlamaIndex (llama-index-core)", "llamaindex") from err


class DocragRetriever(BaseRetriever):
    """The ``k`` chunks most relevant to a query among those ``user`` may read (None: anonymous), as NodeWithScore
    (docrag's cosine score) whose TextNode metadata holds ``source``, ``chunk_id``, ``score``, rank, offsets."""

    def __init__(self, index, user: str | None = None, k: int = 4, **options) -> None:
        super().__init__(**options)
        self.index = open_index(index)
        self.user = user
        self.k = k

    @classmethod
    def from_index_dir(cls, index_dir: str | Path, user: str | None = None, k: int = 4, **options) -> DocragRetriever:
        return cls(Path(index_dir), user=user, k=k, **options)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = search_hits(self.index, query_bundle.query_str, self.user, self.k)
        return [
            NodeWithScore(
                node=TextNode(
                    id_=f"docrag-{hit['chunk_id']}",
                    text=hit["text"],
                    metadata=hit_metadata(hit),
                    start_char_idx=hit["start"],
                    end_char_idx=hit["end"],
                ),
                score=hit["score"],
            )
            for hit in hits
        ]
