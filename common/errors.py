"""Domain exceptions that more than one layer raises. Only the CLI (``cli/main.py``) turns them into one-line errors;
everything else just raises. A layer's own errors live in its ``errors.py`` and derive from ``RagError``.

Every message names the bad value and says what to do about it.
"""


class RagError(Exception):
    """Base class for every error a user can fix; the CLI prints ``str(err)`` and exits 1."""


class UsageError(RagError):
    """A bad argument or option value; the CLI exits 2."""


class EmbedderMismatchError(RagError):
    """The index was built with a different embedder than the one asked for."""


class ModelLoadError(RagError):
    """A model could not be found or loaded."""
