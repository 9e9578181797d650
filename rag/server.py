"""`rag serve`: the Python API over HTTP, for the users that an API key names.

Identity comes only from ``Authorization: Bearer TOKEN`` (rag.keys); the token's user gets the principals of the
policy in force in the generation that answers. A request body names no user, principal or filter: request models
forbid unknown fields (422). Without a token a request is refused (401), unless the server runs with
``--allow-anonymous``, when it is served as the anonymous user (documents open to everyone). Refusals and errors
use one JSON shape (``{"error": {"message", "type", "code"}}``, OpenAI's) and never name a path of this machine.

Endpoints: POST /v1/search, POST /v1/ask (JSON, or Server-Sent Events with "stream": true), POST
/v1/chat/completions and GET /v1/models (OpenAI-compatible, rag.server_chat), GET /v1/chunks/{id} (a cited passage,
for its reader only), GET /v1/status, GET /healthz, and the web page at / (rag/static).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and the identity
# dependency (Who) is a local of create_app that string annotations could not resolve.
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest.common import RagError

from .server_guards import BODY_DEADLINE_S, RequestGuard, error_body
from .server_requests import (
    MAX_QUESTION_CHARS,
    Refusal,
    Strict,
    http_status,
    run_streaming,
    sse,
    sse_response,
    stream_error,
)

log = logging.getLogger("rag.server")

STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}


class SearchRequest(Strict):
    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int = Field(5, ge=1, le=50)
    mode: Literal["hybrid", "dense"] | None = None


class AskRequest(Strict):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int | None = Field(None, ge=1, le=20)
    stream: bool = False
    max_new_tokens: int = Field(48, ge=1, le=256)


@dataclass(frozen=True)
class Caller:
    user: str | None  # None: anonymous (only with --allow-anonymous)


def create_app(
    index,
    keys,
    allow_anonymous: bool = False,
    cors_origins: tuple[str, ...] = (),
    body_deadline_s: float = BODY_DEADLINE_S,
) -> FastAPI:
    """The ASGI app over an open ``rag.api.Index`` and a ``rag.keys.KeyStore``."""
    from .server_chat import add_chat_routes

    app = FastAPI(title="docrag", docs_url=None, redoc_url=None, openapi_url=None)

    def caller(request: Request) -> Caller:
        header = request.headers.get("authorization")
        if header is None:
            if allow_anonymous:
                return Caller(None)
            raise Refusal(401, "an API key is required: send Authorization: Bearer TOKEN", "authentication_error")
        scheme, _, token = header.partition(" ")
        user = keys.user_for(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if user is None:
            raise Refusal(401, "the API key is not valid (unknown, expired or revoked)", "authentication_error")
        return Caller(user)

    Who = Annotated[Caller, Depends(caller)]

    @app.exception_handler(Refusal)
    async def refused(request: Request, err: Refusal):
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return JSONResponse(error_body(err.status, err.message, err.kind), err.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        return JSONResponse(error_body(422, validation_message(err), "invalid_request_error"), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return JSONResponse(error_body(err.status_code, str(err.detail), "invalid_request_error"), err.status_code)

    @app.exception_handler(RagError)
    async def domain_error(request: Request, err: RagError):
        status, kind, message = http_status(err)
        return JSONResponse(error_body(status, message, kind), status)

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception):
        log.exception("internal error on %s", request.url.path)
        return JSONResponse(error_body(500, "internal error; the server's log has the details", "server_error"), 500)

    @app.get("/healthz")
    def healthz():
        index.generation  # noqa: B018 - opens the live generation: a broken index is unhealthy
        return {"status": "ok"}

    @app.get("/v1/status")
    def status(who: Who):
        return index.status(user=who.user)

    @app.post("/v1/search")
    def search(body: SearchRequest, who: Who):
        return index.search(body.query, user=who.user, k=body.k, mode=body.mode)

    @app.post("/v1/ask")
    def ask(body: AskRequest, who: Who):
        def run(on_token):
            limit = body.max_new_tokens
            return index.ask(body.question, user=who.user, k=body.k, on_token=on_token, max_new_tokens=limit)

        if not body.stream:
            return run(None)
        return sse_response(ask_events(run))

    @app.get("/v1/chunks/{chunk_id}")
    def chunk(chunk_id: int, who: Who):
        return index.passage(chunk_id, user=who.user)

    add_chat_routes(app, index, Who)

    @app.get("/")
    def page():
        return FileResponse(_static("index.html"), media_type="text/html")

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC_FILES:
            raise Refusal(404, f"no static file {name!r}", "not_found")
        return FileResponse(_static(name), media_type=STATIC_FILES[name])

    if cors_origins:  # closed unless the operator names the origins that may call from a browser
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(RequestGuard, deadline_s=body_deadline_s)
    return app


def validation_message(err: RequestValidationError) -> str:
    """One line naming each bad field and what is wrong with it (never echoing the value sent)."""
    parts = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
        if problem.get("type") == "extra_forbidden":
            parts.append(f"{where}: unknown field (identity comes from the API key; a request names no user or filter)")
        elif problem.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
        else:
            parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def ask_events(run) -> Iterator[str]:
    """/v1/ask's stream: token events as the answer is produced, then citations, then done with the whole JSON
    answer, whose "answer" is the verdict (a streamed reading the passages do not support becomes "I don't know.")."""
    for kind, value in run_streaming(run):
        if kind == "token":
            yield sse("token", {"text": value})
        elif kind == "result":
            yield sse("citations", {"citations": value["citations"]})
            yield sse("done", value)
        else:
            yield sse("error", stream_error(value))


def _static(name: str):
    return resources.files("rag").joinpath("static", name)
