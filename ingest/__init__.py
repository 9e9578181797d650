"""Ingest: load a folder -> documents -> chunks -> embeddings -> catalog + FAISS index (incremental, atomic)."""
