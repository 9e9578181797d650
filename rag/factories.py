"""How the command line gets its models: factories that the commands call, and that tests replace with fakes.

``rag/cli.py`` reads them from the click context object, so a test injects fakes with
``CliRunner().invoke(cli, args, obj={"models": ModelFactories(embedder=..., generator=...)})`` instead of patching
module attributes. The defaults import torch and transformers only when a model is actually loaded, so that
``rag --help`` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def load_default_embedder(name: str | None = None, progress: bool | None = None):
    """``ingest.embedding.load_embedder``: the bundled MiniLM for ``None``, else a model name or path."""
    from ingest.embedding import load_embedder

    return load_embedder(name, progress=progress)


def load_default_generator(name: str | None = None):
    """``rag.generation.load_generator``: the bundled Gemma 3 270M for ``None``, else a model name or path."""
    from .generation import load_generator

    return load_generator(name)


@dataclass(frozen=True)
class ModelFactories:
    """``embedder(name, progress=None)`` and ``generator(name)``; a name of ``None`` means the default model."""

    embedder: Callable = load_default_embedder
    generator: Callable = load_default_generator
