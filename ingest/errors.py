"""Domain exceptions. Only ``rag/cli.py`` turns them into one-line CLI errors; everything else just raises.

Every message names the bad value and says what to do about it.
"""


class RagError(Exception):
    """Base class for every error a user can fix; the CLI prints ``str(err)`` and exits 1."""


class UsageError(RagError):
    """A bad argument or option value; the CLI exits 2."""


class PolicyError(RagError):
    """The permission policy file is malformed (names the file and the rule)."""


class IndexNotFoundError(RagError):
    """No index exists at the given directory."""


class IndexCorruptError(RagError):
    """The catalog and the FAISS index disagree, or a file cannot be read. Never half-read."""


class IndexBusyError(RagError):
    """Another process holds the index lock."""


class EmbedderMismatchError(RagError):
    """The index was built with a different embedder than the one asked for."""


class ModelLoadError(RagError):
    """A model could not be found or loaded."""


class LoadError(RagError):
    """One file could not be read or parsed; ``str(err)`` is the skip reason shown to the user."""


class IndexWriteError(RagError):
    """The index could not be written (a full disk, a read-only folder); the previous generation stays live."""


class QAFormatError(RagError):
    """A QA file is malformed (names the file and line)."""
