"""Permissions through the real sync + catalog + FAISS path (HashEmbedder), end to end."""

import os

import pytest

from fakes import HashEmbedder, write
from ingest.store import open_index
from ingest.sync import index_folder
from rag.retrieval import Retriever

POLICY = """
default = "deny"
[groups]
finance = ["alice", "bob"]
hr = ["erin"]
[[rules]]
path = "finance/**"
allow = ["group:finance", "user:carol"]
[[rules]]
path = "handbook/**"
allow = ["*"]
[[rules]]
path = "hr/*.md"
allow = ["group:hr"]
[[rules]]
path = "finance/board/**"
allow = ["user:alice"]
"""


@pytest.fixture
def corpus(tmp_path):
    docs = tmp_path / "org"
    files = {
        "handbook/welcome.md": "Welcome aboard. The canteen opens at noon. Budget questions go to finance.",
        "finance/budget.txt": "The 2031 budget for the lighthouse project is 4.2 million kroner.",
        "finance/board/minutes.txt": "Board minutes: the budget was approved after a long debate.",
        "hr/salaries.md": "Salary bands for the lighthouse project are confidential budget items.",
        "misc/unruled.txt": "This note about the budget matches no rule and stays hidden.",
    }
    for name, text in files.items():
        write(docs, name, text)
    write(docs, ".rag-acl.toml", POLICY)
    return docs


def sources(retriever, user, k=10):
    return {r.source for r in retriever.search("budget lighthouse project", k=k, user=user)}


def test_each_user_sees_exactly_what_the_policy_allows(corpus, tmp_path):
    embedder = HashEmbedder()
    index_folder(corpus, tmp_path / "idx", embedder)
    retriever = Retriever(tmp_path / "idx", embedder=embedder)
    assert sources(retriever, None) == {"handbook/welcome.md"}
    assert sources(retriever, "bob") == {"handbook/welcome.md", "finance/budget.txt"}
    assert sources(retriever, "carol") == {"handbook/welcome.md", "finance/budget.txt"}
    assert sources(retriever, "alice") == {"handbook/welcome.md", "finance/budget.txt", "finance/board/minutes.txt"}
    assert sources(retriever, "erin") == {"handbook/welcome.md", "hr/salaries.md"}
    assert sources(retriever, "mallory") == {"handbook/welcome.md"}


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_top_k_is_full_even_when_few_chunks_are_readable(corpus, tmp_path, mode):
    embedder = HashEmbedder()
    for n in range(60):  # many public decoys that score higher than erin's one readable restricted chunk
        (corpus / "handbook" / f"decoy{n}.md").write_text("budget lighthouse project budget lighthouse " * 3)
    index_folder(corpus, tmp_path / "idx", embedder)
    retriever = Retriever(tmp_path / "idx", embedder=embedder)
    results = retriever.search("salary bands confidential", k=5, user="erin", mode=mode)
    assert len(results) == 5
    assert results[0].source == "hr/salaries.md"


def test_hybrid_is_full_when_the_best_keyword_matches_are_all_restricted(corpus, tmp_path, caplog):
    embedder = HashEmbedder()
    for n in range(40):  # restricted chunks that match the query's words better than anything erin may read
        (corpus / "finance" / f"pay{n}.txt").write_text(f"Salary bands {n}: salary bands, salary bands.")
    index_folder(corpus, tmp_path / "idx", embedder)
    retriever = Retriever(tmp_path / "idx", embedder=embedder)
    results = retriever.search("salary bands", k=2, user="erin", mode="hybrid")
    assert [r.source for r in results] == ["hr/salaries.md", "handbook/welcome.md"]
    assert "internal error" not in caplog.text  # filtered inside the search, not by the fail-closed re-check


def test_a_user_with_no_readable_chunks_gets_nothing(tmp_path):
    docs = tmp_path / "locked"
    docs.mkdir()
    (docs / "secret.txt").write_text("the vault code is 1234")
    (docs / ".rag-acl.toml").write_text('default = "deny"\n')
    index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert Retriever(tmp_path / "idx", embedder=HashEmbedder()).search("vault code", user="alice") == []


def test_policy_change_applies_without_re_embedding(corpus, tmp_path):
    embedder = HashEmbedder()
    index_folder(corpus, tmp_path / "idx", embedder)
    retriever = Retriever(tmp_path / "idx", embedder=embedder)
    assert "finance/budget.txt" not in sources(retriever, "erin")
    calls = embedder.calls
    policy = corpus / ".rag-acl.toml"
    policy.write_text(
        POLICY.replace('allow = ["group:finance", "user:carol"]', 'allow = ["group:finance", "group:hr"]')
    )
    report = index_folder(corpus, tmp_path / "idx", embedder)
    assert embedder.calls == calls  # nothing re-embedded
    assert report.permissions_changed == 1 and report.unchanged == 5
    assert "finance/budget.txt" in sources(retriever, "erin")
    assert "finance/budget.txt" not in sources(retriever, "carol")


def test_policy_file_is_never_retrievable(corpus, tmp_path):
    index_folder(corpus, tmp_path / "idx", HashEmbedder())
    live = open_index(tmp_path / "idx")
    assert ".rag-acl.toml" not in live.catalog.documents()
    assert not any("group:finance" in c.text for c in live.catalog.iter_chunks())
    live.close()


def test_tampered_catalog_row_is_dropped_by_the_fail_closed_check(corpus, tmp_path, caplog):
    """If the FAISS filter and the catalog ever disagree, the catalog wins and the chunk never leaves."""
    import rag.retrieval

    embedder = HashEmbedder()
    index_folder(corpus, tmp_path / "idx", embedder)
    retriever = Retriever(tmp_path / "idx", embedder=embedder)
    everything = rag.retrieval.Retriever.permitted_ids
    retriever.permitted_ids = lambda user: None  # simulate a broken filter that lets everything through
    results = retriever.search("budget", k=10, user="erin")
    assert {r.source for r in results} <= {"handbook/welcome.md", "hr/salaries.md"}
    assert "internal error" in caplog.text
    assert everything is rag.retrieval.Retriever.permitted_ids


def test_acl_option_overrides_and_is_not_indexed(corpus, tmp_path):
    outside = tmp_path / "strict.toml"
    outside.write_text('default = "deny"\n[[rules]]\npath = "handbook/**"\nallow = ["user:zoe"]\n')
    index_folder(corpus, tmp_path / "idx", HashEmbedder(), acl=outside)
    retriever = Retriever(tmp_path / "idx", embedder=HashEmbedder())
    assert sources(retriever, None) == set()
    assert sources(retriever, "zoe") == {"handbook/welcome.md"}
    assert os.path.exists(outside)


def test_demo_corpus_every_policy_user_sees_exactly_their_documents(tmp_path):
    """The bundled corpus: each user named in its policy (and anonymous) retrieves exactly the documents the policy
    grants them, and nobody retrieves the uncovered archive or the policy file."""
    from corpora import bundled_corpus
    from ingest.policy import find_policy
    from rag.permissions import query_principals, readable

    corpus = bundled_corpus()
    policy = find_policy(corpus, None)
    embedder = HashEmbedder()
    index_folder(corpus, tmp_path / "idx", embedder)
    retriever = Retriever(tmp_path / "idx", embedder=embedder)
    documents = {str(p.relative_to(corpus)) for p in corpus.rglob("*") if p.is_file() and not p.name.startswith(".")}
    documents -= {"make_pdfs.py"} if "make_pdfs.py" in documents else set()
    users = sorted({u for members in policy.groups.values() for u in members})
    assert len(users) >= 6
    views = set()
    for user in [None, *users]:
        principals = query_principals(policy.groups, user)
        expected = {d for d in documents if readable(policy.principals_for(d), principals)}
        got = {r.source for r in retriever.search("the company budget, people and products", k=500, user=user)}
        assert got == expected, user
        assert not any(s.startswith("archive/") or s.endswith(".rag-acl.toml") for s in got)
        views.add(frozenset(got))
    assert len(views) >= 4
    assert "finance/q1-2031-results.pdf" in {r.source for r in retriever.search("revenue", k=500, user="alice")}
    assert not any(r.source.startswith("finance/") for r in retriever.search("revenue", k=500, user=None))
