"""Hybrid retrieval: the catalog's FTS5 keyword index, its permission filter, and BM25 + dense fusion (HashEmbedder)."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import HashEmbedder, bump, make_format_1, write
from ingest.catalog import Catalog, query_words
from ingest.common import UsageError
from ingest.errors import IndexCorruptError
from ingest.store import open_index
from ingest.sync import index_folder
from ingest.types import Chunk
from rag.retrieval import Retriever, reciprocal_rank_fusion


class NumberedCatalog:
    """A catalog with one document per text, one chunk each, numbered 1..len(texts) in order; ``principals[n]``
    (default everyone) are text n's readers. Searches answer in those numbers, not in the catalog's chunk ids."""

    def __init__(
        self, path: Path, texts: list[str], principals: dict[int, list[str]] | None = None, numbers: list[int] = ()
    ) -> None:
        self.catalog = Catalog(path)
        self.number: dict[int, int] = {}
        with self.catalog.transaction():
            for n, text in zip(numbers or range(1, len(texts) + 1), texts):
                readers = (principals or {}).get(n, ["*"])
                doc_id = self.catalog.add_document(f"doc{n}.txt", str(n), 0, len(text), readers)
                [chunk_id] = self.catalog.add_chunks(doc_id, [Chunk(0, len(text), text)])
                self.number[chunk_id] = n

    def lexical_search(self, query: str, limit: int, readable=None) -> list[tuple[int, float]]:
        return [(self.number[i], s) for i, s in self.catalog.lexical_search(query, limit, readable=readable)]


def fts_ids(catalog: Catalog) -> list[int]:
    """Every keyword row's chunk id, sorted, over all permission classes."""
    tables = catalog._class_tables()
    return sorted(r[0] for t in tables for r in catalog._db.execute(f"SELECT rowid FROM {t}"))


# --- the keyword index in the catalog -----------------------------------------------------------------------


def test_keyword_index_follows_the_chunks_through_incremental_runs(tmp_path):
    docs, index_dir = tmp_path / "docs", tmp_path / "idx"
    write(docs, "animals.txt", "The quokka lives on Rottnest Island.")
    write(docs, "recipes/bread.md", "# Bread\n\nKnead the rye dough for twelve minutes.")
    write(docs, "travel-policy_2031.md", "Per diem rates for every office.")
    embedder = HashEmbedder()
    index_folder(docs, index_dir, embedder)

    def lexical(query):
        live = open_index(index_dir)
        try:
            by_source = {}
            for record in live.catalog.iter_chunks():
                by_source.setdefault(record.source, set()).add(record.id)
            assert fts_ids(live.catalog) == sorted(live.catalog.chunk_ids())  # one keyword row per chunk, same ids
            return {i for i, _ in live.catalog.lexical_search(query, 50)}, by_source
        finally:
            live.close()

    found, by_source = lexical("quokka")
    assert found == by_source["animals.txt"]
    found, by_source = lexical("travel policy")  # the file name, as words, is indexed with each chunk
    assert found == by_source["travel-policy_2031.md"]
    bump(docs / "animals.txt", "The wombat digs burrows in Tasmania.")
    (docs / "recipes/bread.md").unlink()
    index_folder(docs, index_dir, embedder)
    found, by_source = lexical("quokka rottnest knead rye dough")
    assert found == set() and "recipes/bread.md" not in by_source
    found, by_source = lexical("wombat")
    assert found == by_source["animals.txt"]
    assert Retriever(index_dir, embedder=embedder).search("quokka knead", k=10, mode="hybrid")  # dense still fills k


def test_lexical_search_reads_only_the_readable_classes(tmp_path):
    # The 10 best matches for "budget" are someone else's; the 6 weaker ones are everyone's.
    secret = ["budget budget budget"] * 10
    mine = [f"the budget for team {n} and many other words about people, places and plans" for n in range(6)]
    numbered = NumberedCatalog(tmp_path / "c.sqlite", secret + mine, {n: ["group:finance"] for n in range(1, 11)})
    public = set(range(11, 17))
    assert {i for i, _ in numbered.lexical_search("budget", 10)} == set(range(1, 11))
    anonymous = lambda principals: "*" in principals  # noqa: E731
    hits = numbered.lexical_search("budget", 5, readable=anonymous)
    assert len(hits) == 5 and {i for i, _ in hits} <= public
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)  # higher = better
    assert {i for i, _ in numbered.lexical_search("budget", 50, readable=anonymous)} == public
    assert numbered.lexical_search("budget", 5, readable=lambda principals: False) == []
    numbered.catalog.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.lists(st.sampled_from("alpha beta gamma delta orbit vault rye".split()), max_size=8), min_size=1),
    query=st.lists(st.sampled_from("alpha beta gamma zebra orbit".split()), min_size=1, max_size=3),
    restricted=st.sets(st.integers(1, 30)),
    limit=st.integers(1, 12),
)
def test_lexical_search_for_a_class_is_that_class_ranked_alone(texts, query, restricted, limit):
    """What a user who reads only the public class gets equals a catalog holding only the public texts."""
    public = [n for n in range(1, len(texts) + 1) if n not in restricted]
    with tempfile.TemporaryDirectory() as scratch:
        principals = {n: ["user:zoe"] for n in restricted}
        mixed = NumberedCatalog(Path(scratch) / "mixed.sqlite", [" ".join(w) for w in texts], principals)
        # the same documents under the same names: the same chunk ids, so ties break alike
        public_texts = [" ".join(texts[n - 1]) for n in public]
        alone = NumberedCatalog(Path(scratch) / "alone.sqlite", public_texts, numbers=public)
        got = mixed.lexical_search(" ".join(query), limit, readable=lambda p: "*" in p)
        assert got == alone.lexical_search(" ".join(query), limit)
        mixed.catalog.close()
        alone.catalog.close()


WORDS = "alpha beta gamma delta orbit vault rye".split()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.lists(st.sampled_from(WORDS), max_size=8), min_size=1, max_size=30),
    query=st.lists(st.sampled_from("alpha beta gamma zebra orbit".split()), min_size=1, max_size=3),
    classes=st.lists(st.sampled_from(["*", "group:finance", "user:zoe"]), min_size=30, max_size=30),
)
def test_readable_classes_are_ranked_as_one_collection(texts, query, classes):
    """Texts spread over several permission classes, all readable, rank as the same texts in one class, and that
    ranking is FTS5's own bm25() with the catalog's column weights."""
    joined = [" ".join(words) for words in texts]
    with tempfile.TemporaryDirectory() as scratch:
        spread = NumberedCatalog(Path(scratch) / "spread.sqlite", joined, dict(enumerate(([c] for c in classes), 1)))
        one = NumberedCatalog(Path(scratch) / "one.sqlite", joined)
        got = spread.lexical_search(" ".join(query), 50, readable=lambda p: True)
        expected = one.lexical_search(" ".join(query), 50)
        assert [n for n, _ in got] == [n for n, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-9)
        [table] = one.catalog._class_tables()
        fts5 = one.catalog._db.execute(
            f"SELECT rowid, -bm25({table}, 0.5, 1.0, 1.0) FROM {table} WHERE {table} MATCH ?",
            (" OR ".join(f'"{word}"' for word in set(query) - {"zebra"}) or '"zebra"',),
        )
        assert dict(expected) == pytest.approx({one.number[i]: score for i, score in fts5}, rel=1e-9)
        spread.catalog.close()
        one.catalog.close()


# Each query is read as plain words: FTS5 operators, column filters, prefixes and quotes in it mean nothing.
SYNTAX = {
    '"': set(),
    "*": set(),
    "bud*": set(),  # no prefix match: "budget" is not found by "bud"
    "NEAR(alpha beta)": {3},
    "salary NOT budget": {1, 2},  # NOT does not exclude
    "-budget": {1},
    "text:secret": {2},
    "heading:vault": {4},  # no column filter: it looks for the words "heading" and "vault" anywhere
    "budget AND secret": {1, 2},  # AND does not require both
    "(lighthouse": {1},
    "lighthouse)": {1},
    '"unbalanced quote': set(),
    "^vault": {4},
    "{title heading}: vault": {4},
    "' OR 1=1 --": set(),
    '"); DROP TABLE chunks; --': set(),
    "what is the": set(),  # stopwords only
}


def test_fts_syntax_in_user_input_is_inert(tmp_path):
    texts = ["the budget for the lighthouse", "secret salary bands", "alpha near beta", "vault code"]
    numbered = NumberedCatalog(tmp_path / "c.sqlite", texts)
    for query, expected in SYNTAX.items():
        assert {i for i, _ in numbered.lexical_search(query, 10)} == expected, query
    catalog = numbered.catalog
    assert catalog.chunk_count() == 4 and fts_ids(catalog) == sorted(numbered.number)
    catalog.close()
    assert query_words('a "b" c* NEAR(dd ee) x:y') == ["near", "dd", "ee"]


def test_fts_syntax_through_the_retriever(tmp_path):
    docs = tmp_path / "docs"
    write(docs, "a.txt", "the budget for the lighthouse")
    write(docs, "b.txt", "secret salary bands")
    index_folder(docs, tmp_path / "idx", HashEmbedder())
    retriever = Retriever(tmp_path / "idx", embedder=HashEmbedder())
    for query in SYNTAX:
        assert len(retriever.search(query, k=2)) == 2, query


# --- fusion -------------------------------------------------------------------------------------------------


def test_reciprocal_rank_fusion():
    assert reciprocal_rank_fusion([[1, 2, 3], [3, 4]]) == [3, 1, 2, 4]  # in both lists beats first in one
    assert reciprocal_rank_fusion([[1], [2]]) == [1, 2]  # a tie keeps the first list's order
    assert reciprocal_rank_fusion([[], []]) == []


@pytest.fixture
def contracts(tmp_path):
    """One contract named by a code, among question-shaped notes that the bag-of-words embedder finds closer."""
    docs = tmp_path / "docs"
    write(
        docs,
        "contracts.txt",
        "Contract ZX-9941 covers the harbour cranes, the tug fleet, dredging of the northern basin, "
        "night pilotage, buoy maintenance and ice breaking from November to April.",
    )
    for n in range(30):
        note = f"What is the plan of item {n}? What is the use of the plan? It is the one."
        write(docs, f"notes/faq{n:02d}.md", note)
    embedder = HashEmbedder()
    index_folder(docs, tmp_path / "idx", embedder)
    return Retriever(tmp_path / "idx", embedder=embedder)


QUESTION = "What is the status of contract ZX-9941?"


def test_hybrid_finds_a_rare_exact_code_that_dense_ranks_low(contracts):
    dense = [r.source for r in contracts.search(QUESTION, k=20, mode="dense")]
    assert "contracts.txt" not in dense  # 31st of 31 by cosine
    hybrid = contracts.search(QUESTION, k=3, mode="hybrid")
    assert "contracts.txt" in [r.source for r in hybrid]
    assert len(hybrid) == 3 and [r.rank for r in hybrid] == [1, 2, 3]
    assert contracts.search(QUESTION, k=3) == hybrid  # hybrid is the default


def test_hybrid_scores_are_the_cosines(contracts):
    query = contracts.embedder.embed([QUESTION])[0]
    vectors = contracts.index.vectors
    for result in contracts.search(QUESTION, k=8, mode="hybrid"):
        expected = float(vectors.reconstruct(np.array([result.chunk_id]))[0] @ query)
        assert result.score == pytest.approx(expected, abs=1e-5)


def test_a_retriever_built_for_dense_searches_dense(contracts, tmp_path):
    dense = Retriever(tmp_path / "idx", embedder=contracts.embedder, mode="dense")
    assert dense.search(QUESTION, k=3) == contracts.search(QUESTION, k=3, mode="dense")
    assert dense.search(QUESTION, k=3, mode="hybrid") == contracts.search(QUESTION, k=3)


def test_unknown_mode_is_a_usage_error(contracts, tmp_path):
    with pytest.raises(UsageError, match="'sparse'.*hybrid, dense"):
        contracts.search(QUESTION, mode="sparse")
    with pytest.raises(UsageError, match="'sparse'"):
        Retriever(tmp_path / "idx", embedder=contracts.embedder, mode="sparse")


# --- old indexes --------------------------------------------------------------------------------------------


def test_an_old_format_index_asks_for_a_rebuild(tmp_path):
    docs = tmp_path / "docs"
    write(docs, "a.txt", "the budget for the lighthouse")
    embedder = HashEmbedder()
    index_folder(docs, tmp_path / "idx", embedder)
    make_format_1(tmp_path / "idx")
    for attempt in (
        lambda: open_index(tmp_path / "idx"),
        lambda: Retriever(tmp_path / "idx", embedder=embedder),
        lambda: index_folder(docs, tmp_path / "idx", embedder),  # an incremental run
    ):
        with pytest.raises(IndexCorruptError, match=r"format version 1, this docrag reads 3; .*--rebuild"):
            attempt()
    report = index_folder(docs, tmp_path / "idx", embedder, rebuild=True)
    assert report.added == 1
    assert Retriever(tmp_path / "idx", embedder=embedder).search("lighthouse", k=1)[0].source == "a.txt"
