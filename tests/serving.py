"""Helpers for the server tests: fake models patched in, a two-folder corpus with a policy, a real uvicorn server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import ingest.embedding
import rag.generation
import rag.retrieval
from fakes import HashEmbedder, QuoteGenerator

POLICY = """
default = "deny"
[groups]
finance = ["alice"]
[[rules]]
path = "public/**"
allow = ["*"]
[[rules]]
path = "finance/**"
allow = ["group:finance"]
"""


def patch_embedder(monkeypatch) -> HashEmbedder:
    """Every embedder load in ingest and rag returns this fake."""
    embedder = HashEmbedder()
    monkeypatch.setattr(ingest.embedding, "load_embedder", lambda name=None, progress=None: embedder)
    monkeypatch.setattr(rag.retrieval, "load_embedder", lambda name=None, progress=None: embedder)
    return embedder


def patch_models(monkeypatch) -> tuple[HashEmbedder, QuoteGenerator]:
    """Every model load in ingest and rag returns these fakes."""
    embedder, generator = patch_embedder(monkeypatch), QuoteGenerator()
    monkeypatch.setattr(rag.generation, "load_generator", lambda name=None: generator)
    return embedder, generator


def small_corpus(root: Path) -> Path:
    docs = root / "docs"
    (docs / "public").mkdir(parents=True)
    (docs / "finance").mkdir()
    (docs / "public" / "hours.md").write_text("The harbour office opens at 07:45 on weekdays.")
    (docs / "finance" / "budget.md").write_text("The harbour dredging budget is NOK 4.2 million.")
    (docs / ".rag-acl.toml").write_text(POLICY)
    return docs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def live_server(app):
    """Runs ``app`` on uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
