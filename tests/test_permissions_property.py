"""Property tests: random folders, groups, policies and users; a policy change between two index runs.

For every query, every result is readable by that user, and there are exactly min(k, readable chunks) of them.
Readability comes from an oracle written independently of ``ingest.policy`` (hand-written matchers for the globs
the strategies draw from). Two levels:

- the permission modules alone (policy -> principals -> permitted ids -> FAISS search -> fail-closed), many cases,
  every vector index kind;
- end to end through ``ingest.sync.index_folder`` + ``rag.retrieval.Retriever`` with the HashEmbedder, fewer cases,
  in both retrieval modes (hybrid adds the catalog's keyword search), checking also that a policy change re-embeds
  nothing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import HashEmbedder
from ingest.policy import Policy
from ingest.vectors import VectorIndex
from rag.permissions import PermittedIds, fail_closed, filtered_search, query_principals, readable

USERS = ["ann", "ben", "cho", "dev"]
GROUPS = ["eng", "ops", "law"]
WORDS = "alpha beta gamma delta budget lighthouse salary orbit bread rye quokka island vault".split()
PATHS = ["a.md", "b.txt", "a/x.md", "a/y.txt", "a/deep/z.md", "b/q.md", "b/r.txt", "c/s.md", "c/d/t.txt"]

# Each glob with an oracle that does not share code with ingest.policy.compile_glob.
GLOBS = {
    "a/**": lambda p: p.startswith("a/"),
    "a/*": lambda p: p.startswith("a/") and p.count("/") == 1,
    "*.md": lambda p: "/" not in p and p.endswith(".md"),
    "**/*.txt": lambda p: p.endswith(".txt"),
    "b/?.md": lambda p: p.startswith("b/") and p.count("/") == 1 and len(p) == len("b/q.md") and p.endswith(".md"),
    "**/[st].*": lambda p: p.rsplit("/", 1)[-1][:2] in ("s.", "t."),
    "c/**/t.txt": lambda p: p in ("c/t.txt", "c/d/t.txt"),
    "**": lambda p: True,
}
PRINCIPALS = ["*"] + [f"user:{u}" for u in USERS] + [f"group:{g}" for g in GROUPS]

policies = st.fixed_dictionaries(
    {
        "default": st.sampled_from(["deny", "allow"]),
        "groups": st.fixed_dictionaries({g: st.lists(st.sampled_from(USERS), unique=True) for g in GROUPS}),
        "rules": st.lists(
            st.tuples(st.sampled_from(sorted(GLOBS)), st.lists(st.sampled_from(PRINCIPALS), unique=True, max_size=3)),
            max_size=5,
        ),
    }
)
users = st.sampled_from([None, *USERS, "mallory"])
# Query text: corpus words, words found nowhere, and FTS5 syntax that must neither fail nor widen the match.
QUERIES = [*WORDS, "zebra", 'vault "orbit', "NEAR(alpha beta)", "rye*", "-bread", "text:salary", "quokka AND (island"]


def policy_toml(p: dict) -> str:
    lines = [f'default = "{p["default"]}"', "[groups]"]
    lines += [f"{g} = {list(members)!r}".replace("'", '"') for g, members in p["groups"].items()]
    for glob, allow in p["rules"]:
        lines += ["[[rules]]", f'path = "{glob}"', f"allow = {list(allow)!r}".replace("'", '"')]
    return "\n".join(lines) + "\n"


def oracle_can_read(p: dict | None, user: str | None, source: str) -> bool:
    """Independent statement of the policy's meaning."""
    if p is None:
        return True
    allow = None
    for glob, rule_allow in p["rules"]:
        if GLOBS[glob](source):
            allow = set(rule_allow)  # the last match wins
    if allow is None:
        return p["default"] == "allow"
    if "*" in allow:
        return True
    if user is None:
        return False
    return f"user:{user}" in allow or any(f"group:{g}" in allow and user in m for g, m in p["groups"].items())


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- the permission modules alone ---------------------------------------------------------------------------


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.dictionaries(st.sampled_from(PATHS), st.integers(1, 6), min_size=1),
    first=st.one_of(st.none(), policies),
    second=st.one_of(st.none(), policies),
    kind=st.sampled_from(["flat", "flat", "hnsw", "ivf"]),
    queries=st.lists(st.tuples(users, st.integers(1, 12)), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
)
def test_every_result_is_readable_and_results_are_full(docs, first, second, kind, queries, seed):
    rng = np.random.default_rng(seed)
    chunk_doc = [source for source, n in sorted(docs.items()) for _ in range(n)]
    chunk_ids = np.arange(1, len(chunk_doc) + 1, dtype=np.int64) * 3  # sparse ids, as after deletions
    vectors = VectorIndex.create(8, kind)
    vectors.add(chunk_ids, unit(rng, len(chunk_ids), 8))  # embedded once; the policy change re-embeds nothing
    cache = PermittedIds()
    for generation, p in (("gen-1", first), ("gen-2", second)):
        policy = Policy.open_to_everyone() if p is None else Policy.parse(policy_toml(p), "acl.toml")
        doc_principals = {source: policy.principals_for(source) for source in docs}  # stored at index time
        by_chunk = dict(zip(chunk_ids.tolist(), (doc_principals[s] for s in chunk_doc)))
        for user, k in queries:
            principals = query_principals(policy.groups, user)
            expected_readable = {int(c) for c, s in zip(chunk_ids, chunk_doc) if oracle_can_read(p, user, s)}

            def compute(principals=principals, by_chunk=by_chunk):
                allowed = [c for c, dp in by_chunk.items() if readable(dp, principals)]
                return None if len(allowed) == len(by_chunk) else np.asarray(sorted(allowed), dtype=np.int64)

            permitted = cache.get(generation, principals, compute)
            hits = filtered_search(vectors, unit(rng, 1, 8)[0], k, permitted)
            hits = fail_closed(hits, lambda c, by_chunk=by_chunk: by_chunk[c], principals)
            found = [c for c, _ in hits]
            assert set(found) <= expected_readable
            assert len(found) == len(set(found)) == min(k, len(expected_readable))
            scores = [s for _, s in hits]
            assert scores == sorted(scores, reverse=True)


def test_the_cache_is_per_principal_set_and_cleared_by_a_new_generation():
    cache = PermittedIds()
    calls = []

    def compute(value):
        calls.append(value)
        return np.array([value], dtype=np.int64)

    assert cache.get("g1", frozenset({"*"}), lambda: compute(1)).tolist() == [1]
    assert cache.get("g1", frozenset({"*"}), lambda: compute(2)).tolist() == [1]
    assert cache.get("g1", frozenset({"*", "user:ann"}), lambda: compute(3)).tolist() == [3]
    assert cache.get("g2", frozenset({"*"}), lambda: compute(4)).tolist() == [4]
    assert calls == [1, 3, 4]


def test_fail_closed_drops_and_logs_without_saying_how_many(caplog):
    principals = frozenset({"*", "user:ann"})
    owners = {1: frozenset({"*"}), 2: frozenset({"user:ben"}), 3: frozenset({"user:ann"})}
    with caplog.at_level(logging.ERROR, logger="rag.permissions"):
        kept = fail_closed([(1, 0.9), (2, 0.8), (3, 0.7)], owners.__getitem__, principals)
    assert kept == [(1, 0.9), (3, 0.7)]
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "2" in caplog.records[0].getMessage()


def test_an_empty_permitted_set_returns_nothing_without_searching():
    class Exploding:
        def search(self, *args, **kwargs):  # pragma: no cover - must not run
            raise AssertionError("searched")

    vectors = VectorIndex.create(4)
    vectors.add(np.array([1]), np.array([[1, 0, 0, 0]], dtype=np.float32))
    assert filtered_search(vectors, np.array([1, 0, 0, 0], dtype=np.float32), 5, np.array([], dtype=np.int64)) == []


# --- end to end through sync + catalog + retrieval ----------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.dictionaries(st.sampled_from(PATHS), st.lists(st.sampled_from(WORDS), min_size=3, max_size=40), min_size=1),
    first=st.one_of(st.none(), policies),
    second=st.one_of(st.none(), policies),
    queries=st.lists(st.tuples(users, st.integers(1, 8), st.sampled_from(QUERIES)), min_size=1, max_size=5),
    kind=st.sampled_from(["flat", "flat", "hnsw", "ivf"]),
    drop=st.booleans(),
)
def test_end_to_end_with_a_policy_change_between_two_index_runs(docs, first, second, queries, kind, drop):
    from ingest.store import open_index
    from ingest.sync import index_folder
    from rag.retrieval import Retriever

    root = Path(tempfile.mkdtemp(prefix="perm-prop-"))
    try:
        folder, index_dir = root / "docs", root / "idx"
        for source, words in docs.items():
            (folder / source).parent.mkdir(parents=True, exist_ok=True)
            (folder / source).write_text(" ".join(words) + ".\n")
        folder.mkdir(exist_ok=True)
        embedder = HashEmbedder(dimension=16)
        retriever = None
        for run, p in enumerate((first, second)):
            acl = folder / ".rag-acl.toml"
            if p is None:
                acl.unlink(missing_ok=True)
            else:
                acl.write_text(policy_toml(p))
            if run == 1 and drop and len(docs) > 1:  # a deletion too: removal from every vector index kind
                (folder / sorted(docs)[0]).unlink()
            embedded_before = embedder.calls
            removed = run == 1 and p is None and first is not None  # dropping a policy must be said (--no-acl)
            index_folder(
                folder, index_dir, embedder, chunk_size=12, overlap=2, vector_kind=kind, progress=False, no_acl=removed
            )
            if run == 1:
                assert embedder.calls == embedded_before  # a policy change (or a deletion) re-embeds nothing
            if retriever is None:
                retriever = Retriever(index_dir, embedder=embedder)
            index = open_index(index_dir)
            try:
                chunk_sources = {record.id: record.source for record in index.catalog.iter_chunks()}
            finally:
                index.close()
            for user, k, text in queries:
                readable_chunks = {c for c, s in chunk_sources.items() if oracle_can_read(p, user, s)}
                for mode in ("hybrid", "dense"):
                    results = retriever.search(text, k=k, user=user, mode=mode)
                    assert all(oracle_can_read(p, user, r.source) for r in results)
                    assert {r.chunk_id for r in results} <= readable_chunks
                    assert len(results) == len({r.chunk_id for r in results}) == min(k, len(readable_chunks))
                    assert [r.rank for r in results] == list(range(1, len(results) + 1))
        retriever.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
