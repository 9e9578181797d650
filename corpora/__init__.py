"""The bundled demo corpora, shipped as package data so that ``rag demo`` works from a wheel as well as from a
checkout; see README.md here for what the ``acme`` corpus holds.

``bundled_corpus`` is this package's only code: it imports nothing of ours, so every layer may call it.
"""

from pathlib import Path


def bundled_corpus(name: str = "acme") -> Path:
    """Path of a bundled demo corpus: package data of ``corpora``, in a checkout and in an installed wheel alike."""
    from importlib.resources import files

    return Path(str(files(__name__))) / name
