"""LangChain and LlamaIndex retrievers over rag.api.Index, with the real packages, on a HashEmbedder index."""

import pytest

from fakes import HashEmbedder
from ingest.sync import index_folder
from rag.api import Index

langchain = pytest.importorskip("rag.integrations.langchain", reason="langchain-core not installed (extra: langchain)")
llamaindex = pytest.importorskip(
    "rag.integrations.llamaindex", reason="llama-index-core not installed (extra: llamaindex)"
)

POLICY = """
default = "deny"
[groups]
survey = ["alice"]
[[rules]]
path = "survey/**"
allow = ["group:survey"]
[[rules]]
path = "archive/**"
allow = ["user:bob"]
"""
READABLE, HIDDEN = 10, 490  # alice may read 2% of the chunks
QUERY = "harbour survey depth report"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """500 one-chunk documents; the 490 that alice may not read match the query better than her 10."""
    root = tmp_path_factory.mktemp("two-percent")
    docs = root / "docs"
    (docs / "survey").mkdir(parents=True)
    (docs / "archive").mkdir()
    for i in range(READABLE):
        (docs / "survey" / f"s{i:03}.txt").write_text(f"Survey note {i}: the harbour depth was {i + 7} metres.")
    for i in range(HIDDEN):
        text = f"Archive {i}: harbour survey depth report number {i}, filed by the archive."
        (docs / "archive" / f"a{i:03}.txt").write_text(text)
    (docs / ".rag-acl.toml").write_text(POLICY)
    embedder = HashEmbedder()
    index_folder(docs, root / "index", embedder)
    with Index.open(root / "index", embedder=embedder) as opened:
        yield opened


def test_langchain_retriever_returns_full_k_of_the_users_chunks(index):
    retriever = langchain.DocragRetriever(index=index, user="alice", k=10)
    docs = retriever.invoke(QUERY)
    assert len(docs) == READABLE and all(d.metadata["source"].startswith("survey/") for d in docs)
    expected = index.search(QUERY, user="alice", k=10)["results"]
    assert [d.metadata["chunk_id"] for d in docs] == [r["chunk_id"] for r in expected]  # docrag's exact ranking
    first = docs[0]
    assert first.page_content == expected[0]["text"] and first.metadata["score"] == expected[0]["score"]
    assert set(first.metadata) >= {"source", "chunk_id", "score", "rank"} and "lead" not in first.metadata
    # the unfiltered top 10 is all archive: a post-filter over it would give alice nothing
    assert all(r["source"].startswith("archive/") for r in index.search(QUERY, user="bob", k=10)["results"])


def test_langchain_retriever_is_bound_to_its_user(index):
    assert langchain.DocragRetriever(index=index, user=None, k=5).invoke(QUERY) == []
    bob = langchain.DocragRetriever(index=index, user="bob", k=5).invoke(QUERY)
    assert len(bob) == 5 and all(d.metadata["source"].startswith("archive/") for d in bob)


def test_langchain_retriever_from_an_index_dir(index, monkeypatch):
    import rag.api

    embedder = HashEmbedder()
    monkeypatch.setattr("ingest.embedding.load_embedder", lambda name=None, progress=None: embedder)
    retriever = langchain.DocragRetriever.from_index_dir(index.index_dir, user="alice", k=3)
    assert isinstance(retriever.index, rag.api.Index)
    assert [d.metadata["source"][:7] for d in retriever.invoke(QUERY)] == ["survey/"] * 3
    retriever.index.close()


def test_llamaindex_retriever_returns_full_k_of_the_users_chunks(index):
    retriever = llamaindex.DocragRetriever(index, user="alice", k=10)
    nodes = retriever.retrieve(QUERY)
    expected = index.search(QUERY, user="alice", k=10)["results"]
    assert len(nodes) == READABLE
    assert [n.node.metadata["chunk_id"] for n in nodes] == [r["chunk_id"] for r in expected]
    assert all(n.node.metadata["source"].startswith("survey/") for n in nodes)
    assert nodes[0].score == expected[0]["score"] and nodes[0].node.get_content() == expected[0]["text"]
    assert (nodes[0].node.start_char_idx, nodes[0].node.end_char_idx) == (expected[0]["start"], expected[0]["end"])
    assert llamaindex.DocragRetriever(index, user=None, k=10).retrieve(QUERY) == []


def test_a_post_filtering_vector_store_gives_alice_less_than_k(index):
    """The contrast the retrievers exist for: LangChain's FAISS store over the same chunks and vectors, filtered on a
    metadata field after its search (default fetch_k=20), returns almost none of the 10 chunks alice may read."""
    faiss_store = pytest.importorskip("langchain_community.vectorstores", reason="langchain-community (bench extra)")
    from langchain_core.embeddings import Embeddings

    class Hashed(Embeddings):
        def embed_documents(self, texts):
            return HashEmbedder().embed(texts).tolist()

        def embed_query(self, text):
            return HashEmbedder().embed([text])[0].tolist()

    chunks = [r for user in ("bob", "alice") for r in index.search(QUERY, user=user, k=HIDDEN)["results"]]
    store = faiss_store.FAISS.from_texts(
        [c["text"] for c in chunks],
        Hashed(),
        metadatas=[{"source": c["source"], "alice": c["source"].startswith("survey/")} for c in chunks],
        distance_strategy="MAX_INNER_PRODUCT",
    )
    post_filtered = store.similarity_search(QUERY, k=10, filter={"alice": True})
    assert len(post_filtered) < READABLE  # 0 of 10 here (langchain-community 0.4.2)
    assert len(langchain.DocragRetriever(index=index, user="alice", k=10).invoke(QUERY)) == READABLE
