"""The bundled demo corpora, shipped as package data so that ``rag demo`` works from a wheel as well as from a
checkout. ``ingest.paths.bundled_corpus`` finds them with ``importlib.resources``; see README.md here for what the
``acme`` corpus holds."""
