"""What the endpoints of `rag serve` (rag.server, rag.server_chat) share: the request models' base and limits, the
refusal they raise, the mapping of domain errors to HTTP statuses, and Server-Sent Events.
"""

# No `from __future__ import annotations`: FastAPI and pydantic read the annotations of what is defined here.
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from ingest.common import RagError, UsageError

from .errors import ChunkNotFoundError, GeneratorServerError
from .server_guards import error_body

log = logging.getLogger("rag.server")

MAX_QUESTION_CHARS = 2000  # a question, not a document: longer ones are refused with 422


class Strict(BaseModel):
    # Unknown fields are refused, not ignored: a client that sends "user" or "filter" learns at once that it has
    # no effect, instead of believing it narrowed (or widened) what it reads.
    model_config = ConfigDict(extra="forbid")


class Refusal(Exception):
    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def http_status(err: RagError) -> tuple[int, str, str]:
    """(status, type, message) for a domain error. Index problems are the operator's to fix and their messages
    name server paths: the client gets a generic 503 and the log gets the detail."""
    if isinstance(err, ChunkNotFoundError):
        return 404, "not_found", str(err)
    if isinstance(err, UsageError):
        return 400, "invalid_request_error", str(err)
    if isinstance(err, GeneratorServerError):  # the reader's LLM server (--generator URL): its URL stays in the log
        log.error("generator server failed: %s", err)
        return 502, "server_error", "the language model server behind this index failed; the server's log says why"
    log.error("index unavailable: %s", err)
    return 503, "server_error", "the index is not available right now; the server's log says why"


def sse(event: str, data) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def sse_response(events: Iterator[str]) -> StreamingResponse:
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def run_streaming(run: Callable[[Callable[[str], None]], dict]) -> Iterator[tuple[str, object]]:
    """Runs ``run(on_token)`` in a thread and yields ("token", text)... then ("result", dict) or ("error", err)."""
    messages: queue.Queue = queue.Queue()

    def work():
        try:
            messages.put(("result", run(lambda token: messages.put(("token", token)))))
        except Exception as err:  # handed to the stream, which reports it as an event
            messages.put(("error", err))

    threading.Thread(target=work, name="rag-stream", daemon=True).start()
    while True:
        kind, value = messages.get()
        yield kind, value
        if kind != "token":
            return


def stream_error(err: Exception) -> dict:
    if isinstance(err, RagError):
        status, kind, message = http_status(err)
        return error_body(status, message, kind)["error"]
    log.error("internal error while streaming", exc_info=err)
    return error_body(500, "internal error; the server's log has the details", "server_error")["error"]
