"""The Python API (rag.api.Index): the CLI's JSON shapes, per-user views, passages, and live generation swaps."""

import json
import threading

import pytest
from click.testing import CliRunner

import rag.generation
from fakes import HashEmbedder, QuoteGenerator
from ingest.errors import IndexNotFoundError
from ingest.sync import index_folder
from rag.api import Index
from rag.cli import cli
from rag.errors import ChunkNotFoundError
from serving import patch_embedder, small_corpus


@pytest.fixture
def embedder(monkeypatch):
    return patch_embedder(monkeypatch)


@pytest.fixture
def generator(monkeypatch):
    model = QuoteGenerator()
    monkeypatch.setattr(rag.generation, "load_generator", lambda name=None: model)
    return model


@pytest.fixture
def folder(tmp_path):
    return small_corpus(tmp_path)


@pytest.fixture
def index_dir(folder, tmp_path, embedder):
    target = tmp_path / "idx"
    index_folder(folder, target, embedder)
    return target


def test_search_returns_the_cli_json_for_the_users_documents_only(index_dir):
    with Index.open(index_dir) as index:
        alice = index.search("harbour budget", user="alice", k=5)["results"]
        anonymous = index.search("harbour budget", k=5)["results"]
    assert {hit["source"] for hit in alice} == {"public/hours.md", "finance/budget.md"}
    assert [hit["source"] for hit in anonymous] == ["public/hours.md"]
    assert set(alice[0]) >= {"rank", "score", "source", "chunk_id", "text", "start", "end"}
    args = ["search", "harbour budget", "--user", "alice", "--index-dir", str(index_dir), "--json"]
    cli_json = json.loads(CliRunner().invoke(cli, args).stdout)
    assert cli_json == {"results": alice}


def test_ask_answers_with_citations_streams_tokens_and_abstains(index_dir, generator):
    tokens = []
    with Index.open(index_dir) as index:
        reply = index.ask("What is the harbour dredging budget?", user="alice", on_token=tokens.append)
        hidden = index.ask("What is the harbour dredging budget?", user=None)
        unknown = index.ask("What is the unknowable harbour budget?", user="alice")
    assert set(reply) >= {"answer", "abstained", "citations", "timings"}
    assert not reply["abstained"] and "NOK 4.2" in reply["answer"]
    assert reply["citations"][0]["source"] == "finance/budget.md"
    assert "".join(tokens).startswith("The harbour dredging budget")
    assert "NOK" not in hidden["answer"] and all(c["source"] != "finance/budget.md" for c in hidden["citations"])
    assert unknown["abstained"] and unknown["answer"] == "I don't know."


def test_owner_status_is_the_cli_json_and_a_users_status_counts_only_what_they_read(index_dir):
    with Index.open(index_dir) as index:
        owner = index.status()
        alice = index.status(user="alice")
        anonymous = index.status(user=None)
    cli_json = json.loads(CliRunner().invoke(cli, ["status", "--index-dir", str(index_dir), "--json"]).stdout)
    assert cli_json == owner
    assert (owner["documents"], alice["documents"], anonymous["documents"]) == (2, 2, 1)
    assert anonymous["chunks"] < owner["chunks"]
    for view in (alice, anonymous):
        assert not {"policy", "rules", "groups", "folder", "index_dir", "default"} & set(view)
    assert anonymous["user"] is None and alice["user"] == "alice" and alice["index"] == "idx"


def test_a_passage_nobody_may_read_looks_exactly_like_one_that_does_not_exist(index_dir):
    with Index.open(index_dir) as index:
        [secret] = index.search("dredging budget", user="alice", k=1)["results"]
        assert index.passage(secret["chunk_id"], user="alice")["text"] == secret["text"]
        with pytest.raises(ChunkNotFoundError) as hidden:
            index.passage(secret["chunk_id"], user="bob")
        with pytest.raises(ChunkNotFoundError) as missing:
            index.passage(999_999, user="bob")
    assert str(hidden.value).replace(str(secret["chunk_id"]), "N") == str(missing.value).replace("999999", "N")


def test_a_new_generation_is_picked_up_and_never_mixed_into_a_call_in_flight(index_dir, folder, embedder):
    budget = folder / "finance" / "budget.md"
    with Index.open(index_dir) as index:
        first = index.generation
        real_embed = embedder.embed
        published = []

        def embed_then_publish(texts):
            vectors = real_embed(texts)
            if not published:  # the query is embedded; now a new generation goes live under the running call
                published.append(True)
                budget.write_text("The harbour dredging budget is NOK 9.9 million.")
                index_folder(folder, index_dir, HashEmbedder())
            return vectors

        embedder.embed = embed_then_publish
        during = index.search("dredging budget", user="alice", k=1)["results"]
        embedder.embed = real_embed
        after = index.search("dredging budget", user="alice", k=1)["results"]
        assert index.generation != first
    assert "4.2" in during[0]["text"]  # the whole call read the generation it started with
    assert "9.9" in after[0]["text"]


def test_concurrent_calls_during_reindexing_all_succeed(index_dir, folder, embedder):
    errors, seen = [], set()

    def client(index):
        try:
            for _ in range(15):
                [hit] = index.search("dredging budget", user="alice", k=1)["results"]
                seen.add(hit["text"].split("NOK ")[1].split()[0])
                assert index.status(user="alice")["documents"] == 2
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    with Index.open(index_dir) as index:
        threads = [threading.Thread(target=client, args=(index,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for amount in ("5.1", "6.3"):
            (folder / "finance" / "budget.md").write_text(f"The harbour dredging budget is NOK {amount} million.")
            index_folder(folder, index_dir, HashEmbedder())
        for thread in threads:
            thread.join()
        [latest] = index.search("dredging budget", user="alice", k=1)["results"]
    assert not errors
    assert seen <= {"4.2", "5.1", "6.3"} and "6.3" in latest["text"]


def test_opening_a_missing_index_fails_before_any_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(rag.generation, "load_generator", lambda name=None: pytest.fail("loaded a model"))
    with pytest.raises(IndexNotFoundError):
        Index.open(tmp_path / "nowhere", generator=None)
