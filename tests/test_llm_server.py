"""The OpenAI-compatible server generator against a tiny in-process fake server (the real llama.cpp server:
tests/test_llamacpp_server.py)."""

import json
import socket

import pytest
from click.testing import CliRunner
from fake_llm_server import FakeLLMServer

from ingest.common import UsageError
from rag.answer import answer_question
from rag.errors import GeneratorServerError
from rag.generation import load_generator
from rag.llm_server import OpenAIServerGenerator, parse_spec
from rag.types import SearchResult


def result(rank, source, text, score=0.6):
    return SearchResult(rank, score, source, 100 + rank, text, 0, len(text))


PASSAGES = [
    result(1, "fleet/skarv.md", "The Skarv's home port is Vardo and it carries twelve crew.", 0.7),
    result(2, "budget/2031.txt", "The 2031 fleet budget is NOK 18.4 million.", 0.5),
]


class ListRetriever:
    def __init__(self, results):
        self.results = results

    def search(self, query, k=4, user=None):
        return self.results[:k]


def test_spec_picks_the_endpoint_and_model():
    assert parse_spec("http://h:8080/v1") == ("http://h:8080/v1", "chat/completions", None)
    assert parse_spec("http://h:8080/v1/completions") == ("http://h:8080/v1", "completions", None)
    chat_with_model = ("https://h/api/v1", "chat/completions", "llama3.2")
    assert parse_spec("https://h/api/v1/chat/completions/#llama3.2") == chat_with_model
    with pytest.raises(UsageError, match="ftp://h"):
        parse_spec("ftp://h/v1")


def test_chat_answer_streams_and_is_checked_against_the_passages():
    with FakeLLMServer("The 2031 fleet budget is NOK 18.4 million [2].\nMore text") as server:
        generator = load_generator(server.url)
        tokens = []
        answer = answer_question(ListRetriever(PASSAGES), generator, "What is the 2031 budget?", on_token=tokens.append)
    assert not answer.abstained
    assert answer.answer == "The 2031 fleet budget is NOK 18.4 million"
    assert [(c.n, c.source) for c in answer.citations] == [(2, "budget/2031.txt")]
    assert len(tokens) > 3 and "More" not in "".join(tokens)  # streamed piece by piece, cut at the newline
    path, _, body = server.requests[-1]
    assert path == "/v1/chat/completions" and body["model"] == "fake-model" and body["stream"] is True
    [message] = body["messages"]
    assert message["role"] == "user" and "[2] (budget/2031.txt) The 2031 fleet budget" in message["content"]
    assert body["temperature"] == 0 and "stop" not in body  # chat: stops are applied client-side


def test_unsupported_answer_becomes_i_dont_know():
    # "2032" is in no passage: the answer is not supported, whatever passage it cites.
    with FakeLLMServer("The 2032 fleet budget is NOK 18.4 million [2]") as server:
        answer = answer_question(ListRetriever(PASSAGES), load_generator(server.url), "What is the budget?")
    assert answer.abstained and answer.answer == "I don't know." and not answer.citations
    assert "not in the passages" in answer.reason


def test_negated_answer_is_not_supported():
    with FakeLLMServer("The Skarv does not carry twelve crew [1]") as server:
        answer = answer_question(ListRetriever(PASSAGES), load_generator(server.url), "How many crew?")
    assert answer.abstained


def test_completions_endpoint_sends_the_few_shot_prompt_with_stops():
    with FakeLLMServer("twelve [1]\nQuestion: next") as server:
        generator = load_generator(server.url + "/completions#gemma")
        answer = answer_question(ListRetriever(PASSAGES), generator, "How many crew does the Skarv carry?")
    assert (answer.answer, answer.abstained) == ("twelve", False)
    path, _, body = server.requests[-1]
    assert path == "/v1/completions" and body["model"] == "gemma"
    assert body["prompt"].endswith("Question: How many crew does the Skarv carry?\nAnswer:")
    assert body["stop"][0] == "\n" and len(body["stop"]) <= 4


def test_a_stop_sequence_split_across_chunks_is_never_emitted():
    with FakeLLMServer("twelve crew Question: who") as server:
        generator = load_generator(server.url + "/completions")
        pieces = list(generator.stream("p", stop=("Question:",)))
    assert "".join(pieces) == "twelve crew "


def test_api_key_comes_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "s3cret")
    with FakeLLMServer("twelve", key="s3cret") as server:
        generator = load_generator(server.url, api_key_env="MY_LLM_KEY")
        assert generator.generate(["hi"]) == ["twelve"]
        assert all(h.get("Authorization") == "Bearer s3cret" for _, h, _ in server.requests)
        with pytest.raises(GeneratorServerError, match="HTTP 401.*--api-key-env"):
            load_generator(server.url)
    monkeypatch.delenv("MY_LLM_KEY")
    with pytest.raises(UsageError, match="MY_LLM_KEY"):
        load_generator("http://127.0.0.1:9/v1", api_key_env="MY_LLM_KEY")
    with pytest.raises(UsageError, match="server URL"):
        load_generator("gemma-3-270m", api_key_env="MY_LLM_KEY")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_one_line_naming_the_url():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(GeneratorServerError) as err:
        OpenAIServerGenerator(url)
    assert f"{url}/models" in str(err.value) and "\n" not in str(err.value)


def test_server_error_mid_request_names_the_url_and_its_message():
    with FakeLLMServer("x") as server:
        generator = load_generator(server.url)
        server.status = 500
        with pytest.raises(GeneratorServerError, match=r"/v1/chat/completions answered HTTP 500: the model crashed"):
            generator.generate(["hi"])


def test_slow_server_times_out():
    with socket.socket() as listener:  # accepts the connection, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        with pytest.raises(GeneratorServerError, match="no reply from .*/v1/models in time"):
            OpenAIServerGenerator(url, read_timeout=0.3)


def test_model_listing_gives_the_model_and_its_context_window():
    with FakeLLMServer("x", models=[{"id": "big", "max_model_len": 32768}]) as server:
        generator = load_generator(server.url)
    assert (generator.model, generator.context_window) == ("big", 32768)
    with FakeLLMServer("x", models=[]) as server, pytest.raises(GeneratorServerError, match="#MODEL"):
        load_generator(server.url)


def test_cli_ask_with_a_server_generator(tmp_path, monkeypatch):
    import ingest.embedding
    import rag.retrieval
    from fakes import HashEmbedder
    from rag.cli import cli

    embedder = HashEmbedder()
    monkeypatch.setattr(ingest.embedding, "load_embedder", lambda name=None, progress=None: embedder)
    monkeypatch.setattr(rag.retrieval, "load_embedder", lambda name=None, progress=None: embedder)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "roster.txt").write_text("Ingrid Solberg leads the harbour survey team.")
    runner = CliRunner()
    assert runner.invoke(cli, ["index", str(docs), "--index-dir", str(tmp_path / "idx")]).exit_code == 0
    with FakeLLMServer("Ingrid Solberg [1]") as server:
        args = ["ask", "Who leads the harbour survey team?", "--index-dir", str(tmp_path / "idx")]
        result = runner.invoke(cli, [*args, "--generator", server.url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answer"] == "Ingrid Solberg" and data["citations"][0]["source"] == "roster.txt"
    result = runner.invoke(cli, [*args, "--generator", f"http://127.0.0.1:{_free_port()}/v1"])
    assert result.exit_code == 1 and result.output.startswith("Error: cannot reach the generator server at http://")


def test_eval_reads_with_a_server_and_refuses_systems_that_need_weights(tmp_path, monkeypatch):
    import ingest.embedding
    from eval.run import EvalOptions, run_eval
    from fakes import HashEmbedder

    embedder = HashEmbedder()
    monkeypatch.setattr(ingest.embedding, "load_embedder", lambda name=None, progress=None: embedder)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "roster.txt").write_text("Ingrid Solberg leads the harbour survey team.")
    qa = tmp_path / "qa.jsonl"
    rows = [
        {"id": "1", "question": "Who leads the harbour survey team?", "answers": ["Ingrid Solberg"]},
        {"id": "2", "question": "Who leads the harbour canteen team?", "answers": []},
    ]
    rows[0]["source"], rows[1]["source"] = "roster.txt", None
    qa.write_text("\n".join(json.dumps(r) for r in rows))
    with FakeLLMServer("Ingrid Solberg [1]") as server:
        options = EvalOptions(qa=qa, corpus=docs, out=tmp_path / "out", generator=server.url, probes=[])
        with pytest.raises(UsageError, match="'lora' needs the generator's weights"):
            run_eval(EvalOptions(**{**options.__dict__, "systems": ["rag", "lora"]}))
        report = run_eval(options)
    # the default: every system that reads with the model as it is (no weights changed)
    assert set(report["systems"]) == {"closed_book", "rag", "oracle", "long_context"}
    assert report["systems"]["rag"]["answerable_accuracy"] == 1.0
    assert report["config"]["generator"] == f"fake-model @ {server.url}"
    # every system's asking is timed, and report.md says where the time went
    assert {f"ask: {name}" for name in report["systems"]} <= set(report["stage_seconds"])
    assert "Where the time went (wall): " in (tmp_path / "out" / "report.md").read_text()


def test_rag_serve_reads_with_a_server_generator(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from ingest.sync import index_folder
    from rag.api import Index
    from rag.keys import KeyStore
    from rag.server import create_app
    from serving import patch_models, small_corpus

    embedder, _ = patch_models(monkeypatch)
    index_folder(small_corpus(tmp_path), tmp_path / "idx", embedder)
    keys = KeyStore(tmp_path / "idx")
    tokens = {user: keys.add(user)[1] for user in ("alice", "bob")}
    question = {"question": "What is the harbour dredging budget?", "stream": True}
    with FakeLLMServer("The harbour dredging budget is NOK 4.2 million [1]") as server:
        with Index.open(tmp_path / "idx", generator=load_generator(server.url)) as index:
            client = TestClient(create_app(index, keys))
            replies = {}
            for user, token in tokens.items():
                headers = {"Authorization": f"Bearer {token}"}
                with client.stream("POST", "/v1/ask", json=question, headers=headers) as stream:
                    blocks = "".join(stream.iter_text()).strip().split("\n\n")
                replies[user] = [dict(line.split(": ", 1) for line in block.splitlines()) for block in blocks]
    alice = replies["alice"]
    assert alice[0]["event"] == "token" and [e["event"] for e in alice[-2:]] == ["citations", "done"]
    done = json.loads(alice[-1]["data"])
    assert done["answer"] == "The harbour dredging budget is NOK 4.2 million" and not done["abstained"]
    assert json.loads(alice[-2]["data"])["citations"][0]["source"] == "finance/budget.md"
    # bob may not read the budget: whatever the model says, no passage of his supports it
    assert json.loads(replies["bob"][-1]["data"])["abstained"] is True


def test_rag_serve_reports_a_failing_llm_server_as_502_without_its_url(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from ingest.sync import index_folder
    from rag.api import Index
    from rag.keys import KeyStore
    from rag.server import create_app
    from serving import patch_models, small_corpus

    embedder, _ = patch_models(monkeypatch)
    index_folder(small_corpus(tmp_path), tmp_path / "idx", embedder)
    keys = KeyStore(tmp_path / "idx")
    headers = {"Authorization": f"Bearer {keys.add('alice')[1]}"}
    with FakeLLMServer("x") as server:
        with Index.open(tmp_path / "idx", generator=load_generator(server.url)) as index:
            server.status = 500
            client = TestClient(create_app(index, keys))
            reply = client.post("/v1/ask", json={"question": "What is the harbour dredging budget?"}, headers=headers)
            assert client.get("/healthz").status_code == 200
    assert reply.status_code == 502 and "language model server" in reply.json()["error"]["message"]
    assert "127.0.0.1" not in reply.text


def test_a_url_that_is_no_llm_server_is_one_line(tmp_path):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "models").write_text("<html>a web page</html>")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        threading.Thread(target=web.serve_forever, args=(0.05,), daemon=True).start()
        url = f"http://127.0.0.1:{web.server_address[1]}/v1"
        with pytest.raises(GeneratorServerError, match=r"/v1/models did not answer as an OpenAI-compatible server"):
            load_generator(url)
        web.shutdown()
