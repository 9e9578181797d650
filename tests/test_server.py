"""`rag serve`'s HTTP API in process (FastAPI's TestClient) with fake models: identity, shapes, streaming, refusals."""

import json
import socket
import time

import httpx
import pytest
from fastapi.testclient import TestClient

import ingest.embedding
from ingest.sync import index_folder
from rag.api import Index
from rag.keys import KeyStore
from rag.server import create_app
from serving import live_server, patch_models, small_corpus


@pytest.fixture
def setup(tmp_path, monkeypatch):
    embedder, _ = patch_models(monkeypatch)
    folder = small_corpus(tmp_path)
    index_dir = tmp_path / "idx"
    index_folder(folder, index_dir, embedder)
    keys = KeyStore(index_dir)
    tokens = {user: keys.add(user)[1] for user in ("alice", "bob")}
    index = Index.open(index_dir)
    yield index, keys, tokens, folder
    index.close()


@pytest.fixture
def client(setup):
    index, keys, tokens, _ = setup
    return TestClient(create_app(index, keys))


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_no_token_bad_token_and_wrong_scheme_are_401(client, setup):
    tokens = setup[2]
    wrong = [{}, bearer("rag_wrong"), {"Authorization": f"Basic {tokens['alice']}"}, {"Authorization": "Bearer"}]
    for headers in wrong:
        response = client.post("/v1/search", json={"query": "harbour"}, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/status").status_code == 401
    assert client.get("/healthz").json() == {"status": "ok"}  # health needs no key and says nothing else


def test_the_key_decides_what_is_read(client, setup):
    tokens = setup[2]
    alice = client.post("/v1/search", json={"query": "harbour budget"}, headers=bearer(tokens["alice"])).json()
    bob = client.post("/v1/search", json={"query": "harbour budget"}, headers=bearer(tokens["bob"])).json()
    assert {hit["source"] for hit in alice["results"]} == {"public/hours.md", "finance/budget.md"}
    assert [hit["source"] for hit in bob["results"]] == ["public/hours.md"]
    status = client.get("/v1/status", headers=bearer(tokens["bob"])).json()
    assert (status["documents"], status["user"]) == (1, "bob") and "rules" not in status and "folder" not in status


@pytest.mark.parametrize(
    "field", [{"user": "alice"}, {"principals": ["group:finance"]}, {"filter": {"source": "finance/**"}}]
)
def test_a_request_cannot_name_its_own_identity_or_filter(client, setup, field):
    tokens = setup[2]
    for path, body in (("/v1/search", {"query": "budget"}), ("/v1/ask", {"question": "What is the budget?"})):
        response = client.post(path, json=body | field, headers=bearer(tokens["bob"]))
        assert response.status_code == 422
        assert "unknown field" in response.json()["error"]["message"]
    chat = {"model": "idx", "messages": [{"role": "user", "content": "What is the budget?"}]} | field
    assert client.post("/v1/chat/completions", json=chat, headers=bearer(tokens["bob"])).status_code == 422


def test_revocation_and_expiry_apply_without_a_restart(client, setup):
    index, keys, tokens, _ = setup
    ask = {"query": "harbour"}
    assert client.post("/v1/search", json=ask, headers=bearer(tokens["alice"])).status_code == 200
    [alice_key] = [k for k in keys.list() if k["user"] == "alice"]
    KeyStore(index.index_dir).revoke(alice_key["id"])  # another process's store: the server sees the file change
    assert client.post("/v1/search", json=ask, headers=bearer(tokens["alice"])).status_code == 401
    key, token = KeyStore(index.index_dir).add("carol", expires_days=1e-6)  # expires in 0.09 s
    time.sleep(0.2)
    assert client.post("/v1/search", json=ask, headers=bearer(token)).status_code == 401
    assert [k["state"] for k in keys.list()] == ["revoked", "active", "expired"]


def test_anonymous_only_when_allowed_and_then_public_documents_only(setup):
    index, keys, tokens, _ = setup
    open_client = TestClient(create_app(index, keys, allow_anonymous=True))
    hits = open_client.post("/v1/search", json={"query": "harbour budget"}).json()["results"]
    assert [hit["source"] for hit in hits] == ["public/hours.md"]
    assert open_client.post("/v1/search", json={"query": "x"}, headers=bearer("rag_wrong")).status_code == 401


def test_ask_json_and_its_event_stream(client, setup):
    tokens = setup[2]
    question = {"question": "What is the harbour dredging budget?"}
    reply = client.post("/v1/ask", json=question, headers=bearer(tokens["alice"])).json()
    assert not reply["abstained"] and "NOK 4.2" in reply["answer"]
    assert reply["citations"][0]["source"] == "finance/budget.md"
    with client.stream("POST", "/v1/ask", json=question | {"stream": True}, headers=bearer(tokens["alice"])) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = parse_sse("".join(stream.iter_text()))
    names = [name for name, _ in events]
    assert names[0] == "token" and names[-2:] == ["citations", "done"] and set(names[:-2]) == {"token"}
    assert "".join(data["text"] for name, data in events if name == "token").startswith("The harbour dredging")
    assert events[-1][1]["answer"] == reply["answer"] and events[-2][1]["citations"] == reply["citations"]


def test_chat_completions_is_openai_shaped_with_citations(client, setup):
    tokens = setup[2]
    models = client.get("/v1/models", headers=bearer(tokens["alice"])).json()
    assert [m["id"] for m in models["data"]] == ["idx"]
    body = {
        "model": "idx",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the harbour dredging budget?"},
        ],
        "temperature": 0.2,
    }
    reply = client.post("/v1/chat/completions", json=body, headers=bearer(tokens["alice"])).json()
    assert reply["object"] == "chat.completion" and reply["model"] == "idx"
    assert "NOK 4.2" in reply["choices"][0]["message"]["content"]
    assert reply["citations"][0]["source"] == "finance/budget.md" and reply["abstained"] is False
    streamed = body | {"stream": True}
    with client.stream("POST", "/v1/chat/completions", json=streamed, headers=bearer(tokens["bob"])) as s:
        lines = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "NOK" not in content and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["source"] != "finance/budget.md" for c in chunks[-1]["citations"])
    wrong = client.post("/v1/chat/completions", json=body | {"model": "gpt-4o"}, headers=bearer(tokens["alice"]))
    assert wrong.status_code == 404 and "idx" in wrong.json()["error"]["message"]


def test_passage_view_checks_the_callers_permission(client, setup):
    tokens = setup[2]
    found = client.post("/v1/search", json={"query": "dredging budget", "k": 1}, headers=bearer(tokens["alice"]))
    [secret] = found.json()["results"]
    path = f"/v1/chunks/{secret['chunk_id']}"
    assert client.get(path, headers=bearer(tokens["alice"])).json()["text"] == secret["text"]
    denied = client.get(path, headers=bearer(tokens["bob"]))
    missing = client.get("/v1/chunks/424242", headers=bearer(tokens["bob"]))
    assert denied.status_code == missing.status_code == 404
    assert "dredging" not in denied.text and "finance" not in denied.text
    assert client.get(path).status_code == 401


def test_bad_input_gets_a_clear_4xx_and_the_server_stays_healthy(client, setup):
    auth = bearer(setup[2]["alice"])
    as_json = auth | {"Content-Type": "application/json"}
    cases = [
        (client.post("/v1/ask", content=b'{"question": "unclosed', headers=as_json), 422),
        (client.post("/v1/ask", json={"question": "x" * (1 << 20)}, headers=auth), 413),
        (client.post("/v1/ask", json={"question": "x" * 5000}, headers=auth), 422),
        (client.post("/v1/ask", content=b"question=hi", headers=auth | {"Content-Type": "text/plain"}), 415),
        (client.post("/v1/ask", json={"question": ""}, headers=auth), 422),
        (client.post("/v1/search", json={"query": "harbour", "k": 10_000}, headers=auth), 422),
        (client.post("/v1/search", json=["harbour"], headers=auth), 422),
        (client.get("/v1/chunks/not-a-number", headers=auth), 422),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        message = response.json()["error"]["message"]
        assert message and "Traceback" not in message and "/tmp" not in message
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/search", json={"query": "harbour"}, headers=auth).status_code == 200


def test_a_slow_client_gets_408_and_others_are_served_meanwhile(setup):
    index, keys, tokens, _ = setup
    app = create_app(index, keys, body_deadline_s=0.5)
    with live_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as slow:
            head = (
                "POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {tokens['alice']}\r\nContent-Length: 100\r\n\r\n"
            )
            slow.sendall(head.encode() + b'{"query": ')
            assert httpx.get(f"{url}/healthz").status_code == 200  # not blocked by the slow one
            slow.settimeout(5)
            answer = ""
            while "}}" not in answer and (piece := slow.recv(4096)):
                answer += piece.decode()
        assert answer.startswith("HTTP/1.1 408") and "took over" in answer
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_security_headers_and_no_cors_by_default(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>docrag</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    preflight = client.options(
        "/v1/search", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert client.get("/static/../keys.json").status_code == 404


def test_a_new_generation_is_served_without_a_restart(client, setup):
    index, _, tokens, folder = setup
    (folder / "finance" / "budget.md").write_text("The harbour dredging budget is NOK 7.7 million.")
    index_folder(folder, index.index_dir, ingest.embedding.load_embedder())  # the patched fake
    hits = client.post("/v1/search", json={"query": "dredging budget", "k": 1}, headers=bearer(tokens["alice"])).json()
    assert "7.7" in hits["results"][0]["text"]


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events
