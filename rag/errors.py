"""The query layer's own errors; ``rag/cli.py`` and the server turn them into one line or an HTTP status."""

from ingest.common import RagError


class ChunkNotFoundError(RagError):
    """A passage id that does not exist, or that the asking user may not read (the two are not told apart)."""


class GeneratorServerError(RagError):
    """The LLM server given as ``--generator URL`` is unreachable, too slow, refused the key or failed (names it)."""
