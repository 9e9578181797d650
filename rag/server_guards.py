"""What stands between the network and the endpoints of `rag serve`: body limits, slow-client deadlines, content
types, security headers, and the one error shape every refusal uses.

Pure ASGI middleware (no FastAPI import), so a request is refused before any endpoint, parser or model sees it.
"""

from __future__ import annotations

import asyncio
import json

MAX_BODY_BYTES = 64 * 1024  # a question, a few chat turns: far below this; a 1 MB body is refused unread
BODY_DEADLINE_S = 10.0  # a client that has not sent its whole body by then is holding a worker for nothing
JSON_TYPES = ("application/json",)

SECURITY_HEADERS = [
    # The page loads only its own script and style, talks only to this server, and cannot be framed.
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def error_body(status: int, message: str, kind: str) -> dict:
    """OpenAI's error shape, so OpenAI clients show the message; our own endpoints use it too."""
    return {"error": {"message": message, "type": kind, "code": status}}


async def send_error(send, status: int, message: str, kind: str) -> None:
    body = json.dumps(error_body(status, message, kind)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + SECURITY_HEADERS})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Reads a POST body in full before the app does: refuses a wrong content type (415), more than
    ``max_bytes`` (413, without reading it when Content-Length says so) and a body that trickles in slower than
    ``deadline_s`` (408). Adds the security headers to every response."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, deadline_s: float = BODY_DEADLINE_S) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _with_headers(send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in JSON_TYPES:
            wrong = f"send JSON: Content-Type must be application/json, not {content_type or 'none'}"
            return await send_error(send, 415, wrong, "invalid_request_error")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await send_error(send, 413, self._too_large(), "invalid_request_error")
        try:
            body = await asyncio.wait_for(self._read(receive), timeout=self.deadline_s)
        except TimeoutError:
            return await send_error(send, 408, f"the request body took over {self.deadline_s:g} s to arrive", "timeout")
        except _TooLarge:
            return await send_error(send, 413, self._too_large(), "invalid_request_error")
        except _Disconnected:
            return None
        return await self.app(scope, _replay(body, receive), send)

    def _too_large(self) -> str:
        return f"the request body is over {self.max_bytes // 1024} KB; ask a shorter question"

    async def _read(self, receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the app may wait for a disconnect (streaming responses do)

    return replay


def _with_headers(send):
    async def send_with_headers(message):
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
            message = {**message, "headers": list(message.get("headers", [])) + extra}
        await send(message)

    return send_with_headers
