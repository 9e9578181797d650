"""`rag keys`: tokens shown once, only hashes stored (0600), list/revoke, and the KeyStore's lookup."""

import hashlib
import json
import stat

import pytest
from click.testing import CliRunner

from ingest.sync import index_folder
from rag.cli import cli
from rag.keys import KeyStore
from serving import patch_models, small_corpus


@pytest.fixture
def index_dir(tmp_path, monkeypatch):
    embedder, _ = patch_models(monkeypatch)
    target = tmp_path / "idx"
    index_folder(small_corpus(tmp_path), target, embedder)
    return target


def rag(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_add_prints_the_token_once_and_stores_only_its_hash(index_dir):
    added = rag("keys", "add", "alice", "--index-dir", index_dir)
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith("rag_") and len(token) > 40 and "\n" not in token
    assert "alice" in added.stderr and "2 documents" in added.stderr
    stored = (index_dir / "keys.json").read_text()
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored
    assert stat.S_IMODE((index_dir / "keys.json").stat().st_mode) == 0o600
    assert KeyStore(index_dir).user_for(token) == "alice"
    assert KeyStore(index_dir).user_for(token[:-1]) is None


def test_list_and_revoke(index_dir):
    first = json.loads(rag("keys", "add", "bob", "--index-dir", index_dir, "--json").stdout)
    rag("keys", "add", "alice", "--index-dir", index_dir)
    listed = json.loads(rag("keys", "list", "--index-dir", index_dir, "--json").stdout)["keys"]
    assert [(k["user"], k["state"]) for k in listed] == [("bob", "active"), ("alice", "active")]
    assert all("sha256" not in k and "token" not in k for k in listed)
    revoked = rag("keys", "revoke", first["id"], "--index-dir", index_dir)
    assert revoked.exit_code == 0 and "bob" in revoked.output
    assert KeyStore(index_dir).user_for(first["token"]) is None
    human = rag("keys", "list", "--index-dir", index_dir).output
    assert "revoked" in human and first["token"] not in human


def test_mistakes_are_one_line_errors(index_dir, tmp_path):
    unknown = rag("keys", "revoke", "nope", "--index-dir", index_dir)
    assert unknown.exit_code == 2 and "no key with id 'nope'" in unknown.output
    bad_name = rag("keys", "add", "user:alice", "--index-dir", index_dir)
    assert bad_name.exit_code == 2 and "not valid" in bad_name.output
    no_index = rag("keys", "add", "alice", "--index-dir", tmp_path / "nowhere")
    assert no_index.exit_code == 1 and "no index at" in no_index.output
    assert "Traceback" not in unknown.output + bad_name.output + no_index.output


def test_serve_and_keys_have_helpful_help():
    serve = rag("serve", "--help").output
    assert "--allow-anonymous" in serve and "127.0.0.1" in serve and "/v1/chat/completions" in serve
    assert "shown once" in rag("keys", "--help").output


def test_serve_binds_loopback_loads_models_before_serving_and_warns_without_keys(index_dir, monkeypatch):
    import uvicorn

    from rag.api import Index

    loads, runs = [], []
    real_load = Index.load_models
    monkeypatch.setattr(Index, "load_models", lambda self: loads.append(1) or real_load(self))
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append((app, options)))
    started = rag("serve", "--index-dir", index_dir)
    assert started.exit_code == 0, started.output
    [(app, options)] = runs
    assert options["host"] == "127.0.0.1" and options["port"] == 8000 and loads == [1]
    assert "No API keys yet" in started.stderr and "rag keys add USER" in started.stderr
    assert {route.path for route in app.routes} >= {"/v1/search", "/v1/ask", "/v1/chat/completions", "/healthz", "/"}
