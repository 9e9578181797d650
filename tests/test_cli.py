import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import ingest.embedding
import rag.retrieval
from fakes import HashEmbedder
from rag.cli import cli


@pytest.fixture(autouse=True)
def fake_embedder(monkeypatch):
    embedder = HashEmbedder()

    def load(name=None, progress=None):
        if name not in (None, embedder.name):
            return HashEmbedder(name=name)
        return embedder

    monkeypatch.setattr(ingest.embedding, "load_embedder", load)
    monkeypatch.setattr(rag.retrieval, "load_embedder", load)
    return embedder


@pytest.fixture
def folder(tmp_path):
    docs = tmp_path / "docs"
    (docs / "team").mkdir(parents=True)
    (docs / "handbook.md").write_text("# Handbook\n\nThe office opens at 07:45 on weekdays.")
    (docs / "team" / "roster.txt").write_text("Ingrid Solberg leads the harbour survey team.")
    (docs / "bad.txt").write_bytes(bytes(range(256)) * 4)
    return docs


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result


def test_index_json_contract(folder, tmp_path):
    result = run("index", str(folder), "--index-dir", str(tmp_path / "idx"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("added", "updated", "deleted", "unchanged", "documents", "chunks", "skipped"):
        assert key in data
    assert (data["added"], data["documents"]) == (2, 2)
    assert data["skipped"][0]["path"] == "bad.txt" and data["skipped"][0]["reason"]


def test_search_json_contract_and_default_index_dir(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "env-idx"))
    assert run("index", str(folder)).exit_code == 0
    assert (tmp_path / "env-idx" / "CURRENT").exists()
    result = run("search", "harbour survey team", "-k", "1", "--json")
    assert result.exit_code == 0, result.output
    [hit] = json.loads(result.stdout)["results"]
    assert set(hit) >= {"rank", "score", "source", "chunk_id", "text", "start", "end"}
    assert "lead" not in hit  # the document's opening is the reader's context, not search output
    assert hit["source"] == "team/roster.txt" and hit["rank"] == 1


def test_status_json_contract(folder, tmp_path):
    run("index", str(folder), "--index-dir", str(tmp_path / "idx"))
    result = run("status", "--index-dir", str(tmp_path / "idx"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["documents"], data["embedder"], data["dimension"], data["acl"]) == (2, "hash-embedder", 64, False)
    assert data["chunks"] >= 2


def test_human_output_names_sources(folder, tmp_path):
    run("index", str(folder), "--index-dir", str(tmp_path / "idx"))
    result = run("search", "office opens", "--index-dir", str(tmp_path / "idx"))
    assert result.exit_code == 0 and "handbook.md" in result.output


def test_missing_index_is_one_line_exit_1(tmp_path):
    result = run("search", "anything", "--index-dir", str(tmp_path / "nothing"))
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "no index at" in result.output and "rag index" in result.output
    assert "Traceback" not in result.output


def test_usage_errors_exit_2(tmp_path, folder):
    assert run("index", str(tmp_path / "missing-folder")).exit_code == 2
    assert run("search", "x", "-k", "0").exit_code == 2
    result = run("index", str(folder), "--acl", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2 and "nope.toml" in result.output


def test_help_is_helpful():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("index", "search", "status"):
        assert command in result.output
    assert "RAG_INDEX_DIR" in run("search", "--help").output


def test_corrupt_index_is_reported_not_read(folder, tmp_path):
    run("index", str(folder), "--index-dir", str(tmp_path / "idx"))
    gen = (tmp_path / "idx" / "CURRENT").read_text().strip()
    (tmp_path / "idx" / gen / "catalog.sqlite").write_bytes(b"garbage" * 100)
    result = run("status", "--index-dir", str(tmp_path / "idx"))
    assert result.exit_code == 1 and "--rebuild" in result.output


def test_retrieval_option_keeps_the_json_contract(folder, tmp_path):
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


def test_old_format_index_is_one_line_naming_rebuild(folder, tmp_path):
    from test_hybrid import make_format_1

    run("index", str(folder), "--index-dir", str(tmp_path / "idx"))
    make_format_1(tmp_path / "idx")
    for args in (("index", str(folder)), ("search", "harbour"), ("status",)):
        result = run(*args, "--index-dir", str(tmp_path / "idx"))
        assert result.exit_code == 1, args
        assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
        assert "format version 1" in result.output and "rag index PATH --rebuild" in result.output
    assert run("index", str(folder), "--index-dir", str(tmp_path / "idx"), "--rebuild").exit_code == 0


def test_real_minilm_end_to_end(tmp_path, monkeypatch):
    """The bundled MiniLM, a real FAISS index, through the CLI."""
    monkeypatch.undo()
    import importlib

    importlib.reload(ingest.embedding)
    importlib.reload(rag.retrieval)
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


def test_vector_index_kind_is_kept_shown_and_changed_only_with_rebuild(folder, tmp_path):
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


def test_ray_address_without_the_ray_engine_is_a_usage_error(folder, tmp_path):
    result = run("index", str(folder), "--index-dir", str(tmp_path / "idx"), "--ray-address", "10.0.0.5:6379")
    assert result.exit_code == 2 and "--engine ray" in result.output
