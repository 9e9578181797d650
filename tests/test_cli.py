import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes import HashEmbedder, RecordingExtractor, embedder_factory, make_format_1
from rag.cli import cli
from rag.factories import ModelFactories


@pytest.fixture
def fake_embedder():
    return HashEmbedder()


@pytest.fixture
def fake_generator():
    return RecordingExtractor()


@pytest.fixture
def run(fake_embedder, fake_generator):
    """Invoke the CLI with fake models, injected through its model factories."""
    models = ModelFactories(embedder=embedder_factory(fake_embedder), generator=lambda name=None: fake_generator)

    def invoke(*args):
        return CliRunner().invoke(cli, list(args), obj={"models": models})

    return invoke


@pytest.fixture
def folder(tmp_path):
    docs = tmp_path / "docs"
    (docs / "team").mkdir(parents=True)
    (docs / "handbook.md").write_text("# Handbook\n\nThe office opens at 07:45 on weekdays.")
    (docs / "team" / "roster.txt").write_text("Ingrid Solberg leads the harbour survey team.")
    (docs / "bad.txt").write_bytes(bytes(range(256)) * 4)
    return docs


def test_index_json_contract(run, folder, tmp_path):
    result = run("index", str(folder), "--index-dir", str(tmp_path / "idx"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("added", "updated", "deleted", "unchanged", "documents", "chunks", "skipped"):
        assert key in data
    assert (data["added"], data["documents"]) == (2, 2)
    assert data["skipped"][0]["path"] == "bad.txt" and data["skipped"][0]["reason"]


def test_search_json_contract_and_default_index_dir(run, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "env-idx"))
    assert run("index", str(folder)).exit_code == 0
    assert (tmp_path / "env-idx" / "CURRENT").exists()
    result = run("search", "harbour survey team", "-k", "1", "--json")
    assert result.exit_code == 0, result.output
    [hit] = json.loads(result.stdout)["results"]
    assert set(hit) >= {"rank", "score", "source", "chunk_id", "text", "start", "end"}
    assert "lead" not in hit  # the document's opening is the reader's context, not search output
    assert hit["source"] == "team/roster.txt" and hit["rank"] == 1


def test_status_json_contract(run, folder, tmp_path):
    run("index", str(folder), "--index-dir", str(tmp_path / "idx"))
    result = run("status", "--index-dir", str(tmp_path / "idx"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["documents"], data["embedder"], data["dimension"], data["acl"]) == (2, "hash-embedder", 64, False)
    assert data["chunks"] >= 2


def test_human_output_names_sources(run, folder, tmp_path):
    run("index", str(folder), "--index-dir", str(tmp_path / "idx"))
    result = run("search", "office opens", "--index-dir", str(tmp_path / "idx"))
    assert result.exit_code == 0 and "handbook.md" in result.output


def test_missing_index_is_one_line_exit_1(run, tmp_path):
    result = run("search", "anything", "--index-dir", str(tmp_path / "nothing"))
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "no index at" in result.output and "rag index" in result.output
    assert "Traceback" not in result.output


def test_usage_errors_exit_2(run, tmp_path, folder):
    assert run("index", str(tmp_path / "missing-folder")).exit_code == 2
    assert run("search", "x", "-k", "0").exit_code == 2
    result = run("index", str(folder), "--acl", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2 and "nope.toml" in result.output


def test_help_is_helpful(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("index", "search", "status"):
        assert command in result.output
    assert "RAG_INDEX_DIR" in run("search", "--help").output


def test_corrupt_index_is_reported_not_read(run, folder, tmp_path):
    run("index", str(folder), "--index-dir", str(tmp_path / "idx"))
    gen = (tmp_path / "idx" / "CURRENT").read_text().strip()
    (tmp_path / "idx" / gen / "catalog.sqlite").write_bytes(b"garbage" * 100)
    result = run("status", "--index-dir", str(tmp_path / "idx"))
    assert result.exit_code == 1 and "--rebuild" in result.output


def test_retrieval_option_keeps_the_json_contract(run, folder, tmp_path):
    run("index", str(folder), "--index-dir", str(tmp_path / "idx"))
    keys = {"rank", "score", "source", "chunk_id", "text", "start", "end", "page", "heading"}
    for mode in ("hybrid", "dense"):
        result = run("search", "harbour survey", "--index-dir", str(tmp_path / "idx"), "--retrieval", mode, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert set(data) == {"results"} and all(set(hit) == keys for hit in data["results"])
        assert data["results"][0]["source"] == "team/roster.txt"
    assert run("search", "x", "--index-dir", str(tmp_path / "idx"), "--retrieval", "sparse").exit_code == 2
    for command in ("search", "ask"):
        assert "--retrieval [hybrid|dense]" in run(command, "--help").output


def test_old_format_index_is_one_line_naming_rebuild(run, folder, tmp_path):
    run("index", str(folder), "--index-dir", str(tmp_path / "idx"))
    make_format_1(tmp_path / "idx")
    for args in (("index", str(folder)), ("search", "harbour"), ("status",)):
        result = run(*args, "--index-dir", str(tmp_path / "idx"))
        assert result.exit_code == 1, args
        assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
        assert "format version 1" in result.output and "rag index PATH --rebuild" in result.output
    assert run("index", str(folder), "--index-dir", str(tmp_path / "idx"), "--rebuild").exit_code == 0


def test_real_minilm_end_to_end(tmp_path):
    """The bundled MiniLM, a real FAISS index, through the CLI with its default model factories."""

    def run(*args):
        return CliRunner().invoke(cli, list(args))

    docs = tmp_path / "real"
    docs.mkdir()
    (docs / "boats.md").write_text("# Fleet\n\nThe research vessel Skarv carries twelve crew and a drone.")
    (docs / "food.txt").write_text("The canteen serves lentil soup every Thursday at noon.")
    (docs / "it.html").write_text(
        "<html><body><h1>Wi-Fi</h1><p>The guest network password rotates monthly.</p>"
        "<script>var ignored = 'script text';</script></body></html>"
    )
    assert run("index", str(docs), "--index-dir", str(tmp_path / "idx")).exit_code == 0
    result = run("search", "what soup is served on Thursdays?", "--index-dir", str(tmp_path / "idx"), "--json")
    hits = json.loads(result.stdout)["results"]
    assert hits[0]["source"] == "food.txt"
    result = run("search", "how many people work on the ship?", "--index-dir", str(tmp_path / "idx"), "--json")
    assert json.loads(result.stdout)["results"][0]["source"] == "boats.md"
    status = json.loads(run("status", "--index-dir", str(tmp_path / "idx"), "--json").stdout)
    assert status["embedder"] == "sentence-transformers/all-MiniLM-L6-v2" and status["dimension"] == 384
    assert not any("script text" in h["text"] for h in hits)
    assert Path(tmp_path / "idx").is_dir()
    # The autouse isolation still holds here: the models' cache is the test run's, not the user's.
    assert os.environ["XDG_CACHE_HOME"] != str(Path.home() / ".cache") and os.environ["HF_HUB_OFFLINE"] == "1"


# --- contracts of the help texts and options --------------------------------------------------------------------


def test_ask_help_states_the_real_default_k(run):
    from rag.answer import DEFAULT_K

    help_text = " ".join(run("ask", "--help").output.split())
    assert f"Default: {DEFAULT_K}." in help_text


def test_top_level_help_counts_the_demo_users(run):
    from rag.demo import load_script

    count = len(load_script().users)
    word = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}[count]
    assert f"questions as {word} users" in " ".join(run("--help").output.split())


@pytest.mark.parametrize("limit", [None, "8", "40"])
def test_max_new_tokens_reaches_the_reader_above_its_default(run, folder, tmp_path, fake_generator, limit):
    run("index", str(folder), "--index-dir", str(tmp_path / "idx"))
    args = ("--max-new-tokens", limit) if limit else ()
    question = "When does the office open on weekdays?"
    result = run("ask", question, "--index-dir", str(tmp_path / "idx"), *args, "--json")
    assert result.exit_code == 0, result.output
    assert fake_generator.limits, "the reader never called the generator"
    assert set(fake_generator.limits) == {int(limit) if limit else 16}  # 16: the extractive reader's own default


# --- rag demo ---------------------------------------------------------------------------------------------------


def test_demo_help_says_where_its_index_goes(run):
    help_text = " ".join(run("demo", "--help").output.split())
    assert "Default: a temporary folder" in help_text and "$RAG_INDEX_DIR is not used" in help_text


def test_demo_refuses_an_index_it_did_not_create(run, folder, tmp_path):
    from ingest.store import current_generation

    index_dir = tmp_path / "mine"
    assert run("index", str(folder), "--index-dir", str(index_dir)).exit_code == 0
    live = current_generation(index_dir)
    result = run("demo", "--index-dir", str(index_dir))
    assert result.exit_code == 2 and "not created by `rag demo`" in result.output and str(index_dir) in result.output
    assert "Traceback" not in result.output and current_generation(index_dir) == live
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    assert run("demo", "--index-dir", str(tmp_path / "notes")).exit_code == 2
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_demo_rebuilds_its_own_index_and_asks_as_every_user(run, tmp_path):
    from rag.demo import DEMO_MARKER, load_script

    index_dir = tmp_path / "demo-index"
    for _ in range(2):  # the second run rebuilds the index the first one created
        result = run("demo", "--index-dir", str(index_dir), "--json")
        assert result.exit_code == 0, result.output
        assert (index_dir / DEMO_MARKER).is_file()
    script = load_script()
    answers = json.loads(result.stdout)["answers"]
    assert len(answers) == len(script.users) * len(script.questions)
    assert {a["user"] for a in answers} == set(script.users)


def test_vector_index_kind_is_kept_shown_and_changed_only_with_rebuild(run, folder, tmp_path):
    index_dir = str(tmp_path / "idx")
    assert run("index", str(folder), "--index-dir", index_dir, "--vector-index", "hnsw").exit_code == 0
    assert run("index", str(folder), "--index-dir", index_dir).exit_code == 0  # no flag: the live kind is kept
    status = json.loads(run("status", "--index-dir", index_dir, "--json").stdout)
    assert status["vector_index"] == "hnsw" and status["vector_params"]["M"] == 32
    result = run("index", str(folder), "--index-dir", index_dir, "--vector-index", "ivfpq")
    assert result.exit_code == 2 and "--rebuild" in result.output and "'hnsw'" in result.output
    result = run("index", str(folder), "--index-dir", index_dir, "--vector-index", "ivfpq", "--rebuild")
    assert result.exit_code == 0, result.output
    status = json.loads(run("status", "--index-dir", index_dir, "--json").stdout)
    assert status["vector_index"] == "ivfpq" and status["vector_params"]["nlist"] == 1024


def test_ray_address_without_the_ray_engine_is_a_usage_error(run, folder, tmp_path):
    result = run("index", str(folder), "--index-dir", str(tmp_path / "idx"), "--ray-address", "10.0.0.5:6379")
    assert result.exit_code == 2 and "--engine ray" in result.output
