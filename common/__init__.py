"""What every layer shares: the base of the domain errors, the per-user dirs, and the device and dtype choice.

The lowest layer: ``ingest``, ``rag``, ``eval`` and the CLI may import it, and it imports none of them
(tests/test_layers.py checks both). Nothing here imports a heavy library at module level.
"""
