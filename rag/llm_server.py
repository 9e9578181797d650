"""Any OpenAI-compatible LLM server as the generator: vLLM, the llama.cpp server, Ollama, a hosted API.

``--generator http://HOST:PORT/v1`` speaks ``/v1/chat/completions`` (the server applies the model's chat template);
``.../v1/completions`` sends the prompt as it is (best for base models such as the bundled Gemma, which answer a
few-shot prompt better than a chat template). A ``#NAME`` fragment picks the model (Ollama needs it); without one,
the first model ``/v1/models`` lists is used. The key, when the server wants one, comes from the environment
variable that ``--api-key-env`` names, never from the command line.

Answers stream token by token (Server-Sent Events). Stop sequences are applied here as well as by the server: a chat
model may open with a blank line, which a server-side "\\n" stop would turn into an empty answer. Every failure is
one ``GeneratorServerError`` line that names the URL.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from ingest.common import UsageError

from .errors import GeneratorServerError
from .text import first_stop
from .types import Generator

CHAT, COMPLETIONS = "chat/completions", "completions"
# Servers seldom say how long a context they serve. 2048 tokens is llama-cpp-python's default n_ctx, the smallest
# common one; vLLM reports its max_model_len, which replaces this.
DEFAULT_CONTEXT = 2048
CONNECT_SECONDS = 5.0
READ_SECONDS = 120.0  # between two streamed chunks: a cold server loads its model before the first one
MAX_STOPS = 4  # the OpenAI API accepts at most four stop sequences


def is_server_url(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(("http://", "https://"))


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """(base URL ending in /v1 or the like, endpoint, model or None) from a ``--generator`` URL."""
    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--generator {spec}: not an http(s) URL; give a server's base URL: http://127.0.0.1:8080/v1")
    path = parts.path.rstrip("/")
    endpoint = CHAT
    for name in (CHAT, COMPLETIONS):
        if path.endswith("/" + name):
            endpoint, path = name, path[: -len(name) - 1]
            break
    base = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    return base, endpoint, parts.fragment or None


def api_key_from_env(name: str | None) -> str | None:
    if name is None:
        return None
    key = os.environ.get(name)
    if not key:
        raise UsageError(f"--api-key-env {name}: the environment variable {name} is not set or empty; export it first")
    return key


class OpenAIServerGenerator(Generator):
    """The ``Generator`` interface over an OpenAI-compatible HTTP server; greedy decoding (temperature 0)."""

    def __init__(
        self,
        spec: str,
        api_key: str | None = None,
        connect_timeout: float = CONNECT_SECONDS,
        read_timeout: float = READ_SECONDS,
    ) -> None:
        import httpx

        self.base_url, self.endpoint, model = parse_spec(spec)
        self.url = f"{self.base_url}/{self.endpoint}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(read_timeout, connect=connect_timeout), trust_env=False
        )
        self.model, self.context_window = self._describe(model)
        self.name = f"{self.model} @ {self.base_url}"
        # The reader sends a chat endpoint the chat content itself: the server applies the model's template.
        self.speaks_chat = self.endpoint == CHAT

    def _describe(self, model: str | None) -> tuple[str, int]:
        """The model to ask for and its context window, from ``/v1/models``. Also fails fast when nobody listens."""
        listing = f"{self.base_url}/models"
        with _server_errors(listing):
            response = self._client.get(listing)
            entries = response.json().get("data", []) if response.status_code == 200 else []
        if response.status_code in (401, 403):
            raise GeneratorServerError(
                f"{listing} refused the request (HTTP {response.status_code}): {_reason(response)}; "
                "name the environment variable that holds the key with --api-key-env"
            )
        if model is None:
            if not entries or not entries[0].get("id"):
                raise GeneratorServerError(
                    f"{listing} lists no model (HTTP {response.status_code}); name one: {self.base_url}#MODEL"
                )
            model = entries[0]["id"]
        entry = next((e for e in entries if e.get("id") == model), {})
        context = entry.get("max_model_len") or entry.get("context_length") or DEFAULT_CONTEXT
        return model, int(context)

    def count_tokens(self, text: str) -> int:
        """An over-estimate (no tokenizer here): BPE vocabularies average 3.5-4.5 bytes of English per token."""
        return math.ceil(len(text.encode("utf-8")) / 3)

    def stream(
        self, prompt: str, max_new_tokens: int = 48, stop: Sequence[str] = ("\n",), prefix: str = ""
    ) -> Iterator[str]:
        # A shared prefix is sent whole each time: servers that cache prompts (llama.cpp, vLLM) reuse its KV cache.
        prompt = prefix + prompt
        body = {"model": self.model, "max_tokens": max_new_tokens, "temperature": 0, "stream": True}
        if self.speaks_chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
            body["stop"] = list(stop)[:MAX_STOPS]
        text, emitted = "", 0
        deltas = self._deltas(body)
        try:
            for delta in deltas:
                text += delta
                text = text.lstrip()  # nothing is emitted before the first non-space character
                cut = first_stop(text, stop)
                if cut is not None:
                    if cut > emitted:
                        yield text[emitted:cut]
                    return
                # Hold back a tail that could still become a stop sequence.
                safe = len(text) - max((len(s) for s in stop), default=0)
                if safe > emitted:
                    yield text[emitted:safe]
                    emitted = safe
        finally:
            deltas.close()  # closes the connection, which stops the server generating past a stop sequence
        if len(text) > emitted:
            yield text[emitted:]

    def _deltas(self, body: dict) -> Iterator[str]:
        """The text pieces of a streamed completion, parsed from its Server-Sent Events."""
        with _server_errors(self.url), self._client.stream("POST", self.url, json=body) as response:
            if response.status_code != 200:
                response.read()
                raise GeneratorServerError(
                    f"the generator server at {self.url} answered HTTP {response.status_code}: {_reason(response)}"
                )
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield _delta_text(json.loads(data), self.url)

    def close(self) -> None:
        self._client.close()


@contextlib.contextmanager
def _server_errors(url: str) -> Iterator[None]:
    """Transport failures and non-JSON replies as one GeneratorServerError line naming ``url``."""
    import httpx

    try:
        yield
    except httpx.TimeoutException as err:
        raise GeneratorServerError(f"no reply from {url} in time ({type(err).__name__})") from err
    except httpx.HTTPError as err:
        raise GeneratorServerError(
            f"cannot reach the generator server at {url}: {err}. Is it running? (--generator takes its base URL)"
        ) from err
    except (ValueError, AttributeError) as err:  # a JSON decode error, or JSON of another shape
        raise GeneratorServerError(
            f"{url} did not answer as an OpenAI-compatible server ({type(err).__name__}: {_one_line(err)})"
        ) from err


def _delta_text(event: dict, url: str) -> str:
    if "error" in event:
        raise GeneratorServerError(f"the generator server at {url} failed mid-answer: {_one_line(event['error'])}")
    choices = event.get("choices") or [{}]
    choice = choices[0]
    return (choice.get("delta") or {}).get("content") or choice.get("text") or ""


def _reason(response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return _one_line(response.text) or "(empty body)"
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    return _one_line(error.get("message", error) if isinstance(error, dict) else error)


def _one_line(value) -> str:
    return " ".join(str(value).split())[:200]
