"""Where things live on disk: the default index dir and the per-user cache dir."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_NAME = "docrag"


def default_index_dir() -> Path:
    """``$RAG_INDEX_DIR``, else ``./.rag``."""
    return Path(os.environ.get("RAG_INDEX_DIR") or ".rag")


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/docrag/...`` (else ``~/.cache/docrag/...``), created on demand."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / PROJECT_NAME
    for part in parts:
        path = path / part
    path.mkdir(parents=True, exist_ok=True)
    return path
