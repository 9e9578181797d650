"""The OpenAI-compatible face of `rag serve`: POST /v1/chat/completions and GET /v1/models.

The model is the index (its directory's name, from GET /v1/models). The question is the last user message: each
request is answered from the documents alone, not from the conversation. The reply's content is the answer or
"I don't know."; its citations travel in an extra top-level field "citations" (the same objects as /v1/ask's), with
"abstained". Sampling parameters are accepted and ignored: the reader decodes greedily. A streamed reply carries
the verified answer in one content delta: an OpenAI client cannot take back text it has shown, and a reading the
passages do not support must never be shown.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and the identity
# dependency (Who) is a local of create_app that string annotations could not resolve.
import json
import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .server_requests import MAX_QUESTION_CHARS, Refusal, Strict, run_streaming, sse_response, stream_error


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(Strict):
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=256)
    max_completion_tokens: int | None = Field(None, ge=1, le=256)
    # Accepted for compatibility, ignored: decoding is greedy and one choice is returned.
    temperature: float | None = None
    top_p: float | None = None
    n: Literal[1] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stream_options: dict | None = None

    def question(self) -> str:
        asked = next((m.text() for m in reversed(self.messages) if m.role == "user"), "").strip()
        if not asked:
            raise Refusal(422, "messages: no user message with text to answer", "invalid_request_error")
        if len(asked) > MAX_QUESTION_CHARS:
            raise Refusal(
                422,
                f"messages: the question is over {MAX_QUESTION_CHARS} characters; ask a shorter one",
                "invalid_request_error",
            )
        return asked


def add_chat_routes(app, index, Who) -> None:
    @app.get("/v1/models")
    def models(who: Who):
        return {"object": "list", "data": [{"id": index.name, "object": "model", "created": 0, "owned_by": "docrag"}]}

    @app.post("/v1/chat/completions")
    def chat(body: ChatRequest, who: Who):
        if body.model != index.name:
            wanted = f"no model {body.model!r}; this server answers from the index {index.name!r}"
            raise Refusal(404, wanted, "not_found")
        question = body.question()
        limit = body.max_completion_tokens or body.max_tokens or 48

        def run(on_token):
            return index.ask(question, user=who.user, on_token=on_token, max_new_tokens=limit)

        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return sse_response(_chunks(run, reply_id, created, index.name))
        answer = run(None)
        return {
            "id": reply_id,
            "object": "chat.completion",
            "created": created,
            "model": index.name,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer["answer"]}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "citations": answer["citations"],
            "abstained": answer["abstained"],
        }


def _chunks(run, reply_id: str, created: int, model: str):
    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {
            "id": reply_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for kind, value in run_streaming(run):
        if kind == "result":
            yield chunk({"content": value["answer"]})
            yield chunk({}, "stop", citations=value["citations"], abstained=value["abstained"])
        elif kind == "error":
            yield f"data: {json.dumps({'error': stream_error(value)})}\n\n"
    yield "data: [DONE]\n\n"
