"""The default engine: parse, chunk and embed the changed files in this process, a batch of chunks at a time.

It keeps the contract of ``ingest.ray_engine.RayEngine.parse``, so ``ingest.sync`` writes every run the same way, as
the documents arrive: the driver holds the documents of one embedding batch, never the whole run. Each file is read
again after the scan and parsed only if it still holds what the scan hashed (``read_and_chunk``), as on a Ray worker.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

from .catalog import document_title
from .chunking import Chunker
from .discovery import read_inside
from .embedding import Embedder
from .errors import LoadError, NoTextError
from .loaders import load_bytes
from .types import Chunk

EMBED_BATCH = 256  # chunks embedded per call (and per progress step); sentence-transformers batches further inside
CHANGED_SINCE_SCAN = "changed during indexing: not the content the scan read (the next run looks again)"


def read_and_chunk(
    folder: Path, source: str, digest: str, max_bytes: int, chunker: Chunker
) -> tuple[list[Chunk] | None, str]:
    """(chunks, "") for a file that holds the scan's content; (None, why) when it cannot be loaded, which keeps its
    last good version; ([], why) when it loads and holds no text, which takes its old version out of the index."""
    try:
        data = read_inside(folder, source, max_bytes=max_bytes)
        # Changed since the scan, or swapped for a hard link to another file (whose readers the policy never weighed
        # for this path; symlinks are never followed): indexing it would publish that content under this path's
        # readers, beside the scanned content's hash
        if hashlib.sha256(data).hexdigest() != digest:
            raise LoadError(CHANGED_SINCE_SCAN)
        chunks = chunker.split(load_bytes(source, data))
    except NoTextError as err:
        return [], str(err)
    except LoadError as err:
        return None, str(err)
    return chunks, "" if chunks else "no text to index"


def embedding_text(source: str, chunk: Chunk) -> str:
    """What gets embedded: the document's name and heading path give a chunk its context."""
    title = document_title(source)
    context = f"{title} > {chunk.heading}" if chunk.heading else title
    return f"{context}\n{chunk.text}"


def with_progress(items, show: bool, label: str):
    """``items``, with a progress bar of files on stderr when ``show``."""
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=label, unit="file", file=sys.stderr, leave=False)


class LocalEngine:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def parse(self, folder: Path, changed: list, params: dict, show: bool) -> Iterator[tuple]:
        """(chunks, vectors, "") per changed file, in order, (None, None, reason) when it cannot be loaded, or
        ([], None, reason) when it holds no text; each once its batch is embedded."""
        chunker = Chunker(self.embedder.token_len, params["chunk_size"], params["overlap"])
        waiting: list[tuple[list[Chunk] | None, str]] = []  # parsed, in order, not yet handed out
        texts: list[str] = []
        for item in with_progress(changed, show, "Indexing"):
            chunks, reason = read_and_chunk(folder, item.source, item.hash, params["max_file_bytes"], chunker)
            waiting.append((chunks, reason))
            texts += [embedding_text(item.source, chunk) for chunk in chunks or ()]
            if len(texts) >= EMBED_BATCH:
                yield from self._embedded(waiting, texts)
                waiting, texts = [], []
        yield from self._embedded(waiting, texts)

    def _embedded(self, waiting: list, texts: list[str]) -> Iterator[tuple]:
        vectors = self.embedder.embed(texts) if texts else None
        start = 0
        for chunks, reason in waiting:
            if not chunks:
                yield chunks, None, reason
                continue
            yield chunks, vectors[start : start + len(chunks)], reason
            start += len(chunks)
