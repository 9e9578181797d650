"""Leak matrix: every endpoint, as six users, anonymous and a revoked key, over the bundled corpus and its policy,
then again after a policy change that the running server picks up. What each caller may read is worked out from the
policy file itself (not from the index), and every source, chunk id, text and answer that any response carries is
checked against it. Fake models keep it fast; the HTTP stack is the real app in process."""

import functools
import re
import shutil

import pytest
from fastapi.testclient import TestClient

from corpora import bundled_corpus
from ingest.policy import Policy
from ingest.store import open_index
from ingest.sync import index_folder
from rag.api import Index
from rag.keys import KeyStore
from rag.permissions import query_principals, readable
from rag.server import create_app
from serving import patch_models

USERS = ["alice", "bob", "carol", "dmitri", "fatima", "hana"]
REVOKED = "revoked-key"
ENDPOINTS = ("search", "ask", "ask-stream", "chat", "chat-stream", "passage", "status", "models")


class Oracle:
    """What a caller may read, from the policy file and the catalog's chunks (cached per user: one per run)."""

    def __init__(self, corpus, index_dir) -> None:
        policy = Policy.load(corpus / ".rag-acl.toml")
        self.groups = policy.groups
        live = open_index(index_dir)
        self.chunks = {c.id: c for c in live.catalog.iter_chunks()}
        live.close()
        self.sources = {c.source for c in self.chunks.values()}
        self.allowed = {source: policy.principals_for(source) for source in self.sources}

    @functools.cache  # noqa: B019 - an Oracle lives for one test
    def readable_sources(self, user) -> frozenset[str]:
        principals = query_principals(self.groups, user)
        return frozenset(source for source, allowed in self.allowed.items() if readable(allowed, principals))

    @functools.cache  # noqa: B019 - an Oracle lives for one test
    def readable_texts(self, user) -> str:
        """Every readable chunk's text, one line each: an answer must be a piece of one line."""
        sources = self.readable_sources(user)
        return "\n".join(_flat(c.text) for c in self.chunks.values() if c.source in sources)

    @functools.cache  # noqa: B019 - an Oracle lives for one test
    def hidden_paths(self, user) -> re.Pattern:
        hidden = sorted(self.sources - self.readable_sources(user))
        return re.compile("|".join(rf"(?<![\w/]){re.escape(s)}(?![\w/])" for s in hidden) or r"(?!x)x")


def _flat(text: str) -> str:
    return " ".join(text.split())


class Matrix:
    """Asks everything as everyone and records each leak as a readable line."""

    def __init__(self, client, oracle, tokens, revoked) -> None:
        self.client, self.oracle, self.tokens, self.revoked = client, oracle, tokens, revoked
        self.leaks: list[str] = []
        self.requests = 0

    def headers(self, caller):
        return {} if caller is None else {"Authorization": f"Bearer {self.tokens[caller]}"}

    def check(self, caller, endpoint, response, user):
        self.requests += 1
        body = response.text
        if caller in self.revoked:
            if response.status_code != 401:
                self.leaks.append(f"{caller} got {response.status_code} from {endpoint}")
            return
        who = caller or "anonymous"
        allowed = self.oracle.readable_sources(user)
        texts = self.oracle.readable_texts(user)
        if found := self.oracle.hidden_paths(user).search(body):
            self.leaks.append(f"{who} saw the path {found.group()} via {endpoint}")
        for field, value in _fields(response):
            chunk = self.oracle.chunks.get(value) if field == "chunk_id" else None
            if (field == "source" and value not in allowed) or (chunk and chunk.source not in allowed):
                self.leaks.append(f"{who} got {field} {value} via {endpoint}")
            if field in ("text", "answer", "content") and value and value != "I don't know.":
                if _flat(value).rstrip(" .;,") not in texts:
                    self.leaks.append(f"{who} got text {value[:60]!r} via {endpoint}")

    def run(self, callers, queries):
        """Every document's query on search; every 2nd on ask and chat, every 6th streamed too (they share the
        answer path); every chunk id on the passage view. A revoked key gets a sample: it must be refused at once."""
        chunk_ids = [*self.oracle.chunks, max(self.oracle.chunks) + 1]
        for caller in callers:
            user = caller
            head = self.headers(caller)
            post = self.client.post
            revoked = caller in self.revoked
            for n, query in enumerate(queries[:2] if revoked else queries):
                self.check(caller, "search", post("/v1/search", json={"query": query, "k": 8}, headers=head), user)
                ask = {"question": query}
                chat = {"model": "idx", "messages": [{"role": "user", "content": query}]}
                if n % 2 == 0:
                    self.check(caller, "ask", post("/v1/ask", json=ask, headers=head), user)
                    self.check(caller, "chat", post("/v1/chat/completions", json=chat, headers=head), user)
                if n % 6 == 0:
                    self.check(caller, "ask-stream", post("/v1/ask", json=ask | {"stream": True}, headers=head), user)
                    streamed = post("/v1/chat/completions", json=chat | {"stream": True}, headers=head)
                    self.check(caller, "chat-stream", streamed, user)
            for chunk_id in chunk_ids[:3] if revoked else chunk_ids:
                response = self.client.get(f"/v1/chunks/{chunk_id}", headers=head)
                self.check(caller, "passage", response, user)
                if response.status_code == 404 and "no passage" not in response.json()["error"]["message"]:
                    self.leaks.append(f"{caller}: a 404 for chunk {chunk_id} said something else")
            status = self.client.get("/v1/status", headers=head)
            self.check(caller, "status", status, user)
            if caller not in self.revoked and status.json()["documents"] != len(self.oracle.readable_sources(user)):
                self.leaks.append(f"{caller or 'anonymous'}'s status counts documents they may not read")
            self.check(caller, "models", self.client.get("/v1/models", headers=head), user)


def _fields(response):
    """(key, value) for every key anywhere in a JSON body or in the data of every event of a stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        import json

        payloads = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
        # the raw tokens of a generative reading carry its citation marks ("... [1]"); the verdict does not
        tokens = re.sub(r" ?\[\d+\]", "", "".join(p.get("text", "") for p in payloads if set(p) == {"text"}))
        values = [p for p in payloads if set(p) != {"text"}] + [{"answer": tokens}]
    else:
        values = [response.json()]
    out = []
    while values:
        value = values.pop()
        if isinstance(value, dict):
            out += [(k, v) for k, v in value.items() if not isinstance(v, dict | list)]
            values += [v for v in value.values() if isinstance(v, dict | list)]
        elif isinstance(value, list):
            values += value
    return out


@pytest.fixture
def served(tmp_path, monkeypatch):
    embedder, _ = patch_models(monkeypatch)
    corpus = tmp_path / "acme"
    shutil.copytree(bundled_corpus(), corpus)
    index_dir = tmp_path / "idx"
    index_folder(corpus, index_dir, embedder)
    keys = KeyStore(index_dir)
    tokens = {user: keys.add(user)[1] for user in USERS}
    revoked, tokens[REVOKED] = keys.add("alice")
    keys.revoke(revoked.id)
    # One TestClient context: one event loop for all requests (without it, each request starts its own)
    with Index.open(index_dir) as index, TestClient(create_app(index, keys, allow_anonymous=True)) as client:
        yield client, corpus, index_dir, embedder, tokens


def document_queries(oracle):
    """A query aimed at each document (its first words), so every secret is searched for by everyone."""
    firsts = {}
    for chunk in sorted(oracle.chunks.values(), key=lambda c: c.id):
        firsts.setdefault(chunk.source, " ".join(re.findall(r"\w+", chunk.text)[:8]))
    return [*firsts.values(), "budget salary acquisition price", "unknowable board decision"]


def test_no_endpoint_leaks_before_or_after_a_policy_change(served):
    client, corpus, index_dir, embedder, tokens = served
    callers = [*USERS, None, REVOKED]
    oracle = Oracle(corpus, index_dir)
    assert oracle.readable_sources("alice") != oracle.readable_sources("hana") != oracle.readable_sources(None)
    matrix = Matrix(client, oracle, tokens, revoked={REVOKED})
    matrix.run(callers, document_queries(oracle))

    # While the server runs: bob leaves finance, carol may read the archive, and hana's key is revoked.
    policy = corpus / ".rag-acl.toml"
    text = policy.read_text().replace('finance = ["alice", "bob"]', 'finance = ["alice"]')
    policy.write_text(text + '\n[[rules]]\npath = "archive/**"\nallow = ["user:carol"]\n')
    index_folder(corpus, index_dir, embedder)
    KeyStore(index_dir).revoke(next(k["id"] for k in KeyStore(index_dir).list() if k["user"] == "hana"))
    tokens[f"{REVOKED}-hana"] = tokens.pop("hana")
    changed = Oracle(corpus, index_dir)
    assert "archive/old-strategy.txt" in changed.readable_sources("carol") - oracle.readable_sources("carol")
    assert not any(s.startswith("finance/") for s in changed.readable_sources("bob"))
    revoked = {REVOKED, f"{REVOKED}-hana"}
    second = Matrix(client, changed, tokens, revoked)
    second.run([u for u in USERS if u != "hana"] + [None, *revoked], document_queries(changed))
    carol = client.post("/v1/search", json={"query": "old strategy", "k": 30}, headers=second.headers("carol")).json()
    assert "archive/old-strategy.txt" in {hit["source"] for hit in carol["results"]}  # the new policy is in force

    print(f"{matrix.requests + second.requests} requests, {len(oracle.chunks)} chunks")
    assert matrix.leaks + second.leaks == []
    assert matrix.requests + second.requests > 1500
