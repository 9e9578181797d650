"""The shared base that every layer may use: the errors more than one layer raises, where things live on disk, and
which device and dtype models run on.

``ingest``, ``rag`` and ``eval`` may all import this module; it imports nothing of ours (only the standard library,
and torch inside the device functions), so it sits below the layering as well as inside its lowest layer.
tests/test_layers.py names it (``SHARED_MODULE``) and checks both, and that each name here is used by two layers or
more: what one layer alone uses lives in that layer (a layer's own errors in its ``errors.py``, derived from
``RagError``).

Only the CLI (``rag/cli.py``) and the server turn the errors into one-line messages or HTTP statuses; everything
else just raises. Every message names the bad value and says what to do about it.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROJECT_NAME = "docrag"


# Errors


class RagError(Exception):
    """Base class for every error a user can fix; the CLI prints ``str(err)`` and exits 1."""


class UsageError(RagError):
    """A bad argument or option value; the CLI exits 2."""


class EmbedderMismatchError(RagError):
    """The index was built with a different embedder than the one asked for."""


class ModelLoadError(RagError):
    """A model could not be found or loaded."""


# Paths


def default_index_dir() -> Path:
    """``$RAG_INDEX_DIR``, else ``./.rag``."""
    return Path(os.environ.get("RAG_INDEX_DIR") or ".rag")


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/docrag/...`` (else ``~/.cache/docrag/...``), created on demand."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / _PROJECT_NAME
    for part in parts:
        path = path / part
    path.mkdir(parents=True, exist_ok=True)
    return path


# Device and dtype: shared by the embedder, the generator and the training loops


def best_device() -> str:
    """The device to run models on: "cuda", else "mps", else "cpu"."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def preferred_dtype(device: str, env_var: str) -> str:
    """bfloat16 where the hardware multiplies it natively (AVX512-BF16/AMX CPUs, bf16-capable GPUs), else float32;
    ``env_var`` set to "float32" or "bfloat16" overrides. Shared by the embedder, the generator and training."""
    import torch

    forced = os.environ.get(env_var, "").strip().lower()
    if forced in ("float32", "fp32", "bfloat16", "bf16"):
        return "bfloat16" if forced.startswith("b") else "float32"
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device == "cpu":
        supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return "bfloat16" if supported is not None and supported() else "float32"
    return "float32"
