"""The ingest layer's own errors: the policy file, the files read, and the index on disk. The errors every layer
shares (``RagError``, ``UsageError``, ...) are in ``ingest/common.py``.

Every message names the bad value and says what to do about it.
"""

from .common import RagError


class PolicyError(RagError):
    """The permission policy file is malformed (names the file and the rule)."""


class IndexNotFoundError(RagError):
    """No index exists at the given directory."""


class IndexCorruptError(RagError):
    """The catalog and the FAISS index disagree, or a file cannot be read. Never half-read."""


class IndexBusyError(RagError):
    """Another process holds the index lock."""


class LoadError(RagError):
    """One file could not be read or parsed; ``str(err)`` is the skip reason shown to the user."""


class NoTextError(LoadError):
    """The file was read and parsed, and holds no text (whitespace only, a scanned PDF). Unlike a file that fails to
    load, whose last good version is kept, its previous version leaves the index: emptying a file must not leave its
    old text searchable."""


class IndexWriteError(RagError):
    """The index could not be written (a full disk, a read-only folder); the previous generation stays live."""


class EngineError(RagError):
    """The Ray cluster could not be reached, or its pipeline failed; the previous generation stays live."""
