"""A tiny OpenAI-compatible server in a thread, for fast unit tests of ``rag.llm_server`` (the real-server test is
tests/test_llamacpp_server.py). It streams a scripted reply as Server-Sent Events and records every request."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLMServer:
    def __init__(self, reply: str = "unknown", key: str | None = None, models: list[dict] | None = None) -> None:
        self.reply = reply
        self.key = key
        self.models = [{"id": "fake-model", "object": "model"}] if models is None else models
        self.requests: list[tuple[str, dict, dict]] = []  # (path, headers, body)
        self.status = 200  # set to fail completions with this HTTP status
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if fake.key and self.headers.get("Authorization") != f"Bearer {fake.key}":
                    self._json(401, {"error": {"message": "invalid api key"}})
                    return False
                return True

            def do_GET(self):
                fake.requests.append((self.path, dict(self.headers), {}))
                if not self._authorised():
                    return
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": fake.models})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append((self.path, dict(self.headers), body))
                if not self._authorised():
                    return
                if fake.status != 200:
                    self._json(fake.status, {"error": {"message": "the model crashed"}})
                    return
                chat = self.path == "/v1/chat/completions"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for i, piece in enumerate(_pieces(fake.reply)):
                        choice = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
                        if chat and i == 0:
                            choice["delta"]["role"] = "assistant"
                        self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading at a stop sequence
                    pass

        return Handler


def _pieces(text: str) -> list[str]:
    """Split like a tokenizer would: a word at a time, spaces in front."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]
