"""The ``rag`` command line (``cli.main``): the composition root above ``ingest``, ``rag`` and ``eval``.

``cli.demo`` runs ``rag demo`` and ``cli.terminal`` escapes what reaches a terminal; nothing below this layer
imports it (tests/test_layers.py checks).
"""
