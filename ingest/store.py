"""The index directory: atomic generations, a writer lock, and a consistency check on open.

Layout::

    .rag/
      CURRENT            name of the live generation, replaced atomically (os.replace)
      gen-000007/        catalog.sqlite + vectors.faiss, never modified once CURRENT points at it
      gen-000008.tmp/    a run in progress (or a killed one, removed by the next run)
      lock               held by the one writer

A run copies the live generation into a new ``.tmp`` directory, changes it there, writes and fsyncs both files,
renames the directory, and only then points CURRENT at it. A run killed at any point therefore leaves the previous
generation live and intact; readers never take the lock and never see a half-written index.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .catalog import FORMAT_VERSION, Catalog
from .errors import IndexBusyError, IndexCorruptError, IndexNotFoundError
from .vectors import VectorIndex

CATALOG_FILE = "catalog.sqlite"
VECTORS_FILE = "vectors.faiss"
KEEP_GENERATIONS = 2  # the live one and its predecessor, which a reader may still have open


@dataclass
class OpenIndex:
    """A read-only view of one generation."""

    directory: Path
    generation: str
    catalog: Catalog
    vectors: VectorIndex

    def meta(self, key: str, default=None):
        return self.catalog.get_meta(key, default)

    def close(self) -> None:
        self.catalog.close()


def current_generation(index_dir: Path) -> str | None:
    try:
        name = (index_dir / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def open_index(index_dir: Path, check: bool = True) -> OpenIndex:
    """Open the live generation. Raises IndexNotFoundError or IndexCorruptError, never returns a partial index."""
    index_dir = Path(index_dir)
    generation = current_generation(index_dir)
    if generation is None:
        raise IndexNotFoundError(f"no index at {index_dir}; create one with `rag index PATH --index-dir {index_dir}`")
    gen_dir = index_dir / generation
    for name in (CATALOG_FILE, VECTORS_FILE):
        if not (gen_dir / name).is_file():
            raise IndexCorruptError(
                f"index at {index_dir} is missing {generation}/{name}; repair with `rag index PATH --rebuild`"
            )
    catalog = Catalog(gen_dir / CATALOG_FILE, readonly=True)
    version = catalog.get_meta("format_version")
    if version != FORMAT_VERSION:
        catalog.close()
        raise IndexCorruptError(
            f"index at {index_dir} has format version {version!r}, this docrag reads {FORMAT_VERSION}; "
            "rebuild it with `rag index PATH --rebuild`"
        )
    vectors = VectorIndex.load(gen_dir / VECTORS_FILE)
    index = OpenIndex(index_dir, generation, catalog, vectors)
    if check:
        verify(index)
    return index


def verify(index: OpenIndex) -> None:
    """The catalog and FAISS must hold exactly the same chunk ids."""
    n_catalog, n_vectors = index.catalog.chunk_count(), index.vectors.ntotal
    problem = None
    if n_catalog != n_vectors:
        problem = f"the catalog has {n_catalog} chunks but FAISS has {n_vectors} vectors"
    elif set(index.catalog.chunk_ids()) != set(int(i) for i in index.vectors.ids()):
        problem = "the catalog's chunk ids differ from FAISS's ids"
    if problem:
        index.close()
        raise IndexCorruptError(
            f"index at {index.directory} is inconsistent: {problem}; repair with `rag index PATH --rebuild`"
        )


@contextlib.contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """One writer per index dir. A second one fails at once with a clear message rather than queueing silently."""
    import fcntl

    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / "lock"
    handle = open(path, "a+")  # noqa: SIM115 - held for the duration of the context
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise IndexBusyError(
                f"index at {index_dir} is busy: `rag index` is already running ({holder}); wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


class GenerationWriter:
    """Builds the next generation in a temporary directory; ``commit()`` makes it live atomically."""

    def __init__(self, index_dir: Path, dimension: int, kind: str = "flat", rebuild: bool = False) -> None:
        self.index_dir = Path(index_dir)
        self.previous = None if rebuild else current_generation(self.index_dir)
        self._remove_stale_tmp()
        number = _generation_number(self.previous) + 1 if self.previous else _highest_number(self.index_dir) + 1
        self.name = f"gen-{number:06d}"
        self.tmp_dir = self.index_dir / f"{self.name}.tmp"
        self.tmp_dir.mkdir(parents=True)
        if self.previous:
            live = open_index(self.index_dir, check=True)
            live.catalog.backup_to(self.tmp_dir / CATALOG_FILE)
            self.vectors = live.vectors
            live.close()
        else:
            self.vectors = VectorIndex.create(dimension, kind=kind)
        self.catalog = Catalog(self.tmp_dir / CATALOG_FILE)

    def commit(self) -> None:
        self.vectors.save(self.tmp_dir / VECTORS_FILE)
        self._commit_catalog()
        for name in (VECTORS_FILE, CATALOG_FILE):
            _fsync(self.tmp_dir / name)
        final = self.index_dir / self.name
        if final.exists():  # a leftover of a run killed after its rename but before CURRENT moved
            shutil.rmtree(final)
        os.replace(self.tmp_dir, final)
        _atomic_write(self.index_dir / "CURRENT", self.name + "\n")
        self._prune()

    def abort(self) -> None:
        self.catalog.close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def _commit_catalog(self) -> None:
        self.catalog.transaction().commit()
        self.catalog.close()

    def _remove_stale_tmp(self) -> None:
        if self.index_dir.is_dir():
            for stale in self.index_dir.glob("gen-*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)

    def _prune(self) -> None:
        live = sorted(p for p in self.index_dir.glob("gen-*") if p.is_dir() and not p.name.endswith(".tmp"))
        for old in live[:-KEEP_GENERATIONS]:
            shutil.rmtree(old, ignore_errors=True)


def _generation_number(name: str) -> int:
    return int(name.split("-")[1])


def _highest_number(index_dir: Path) -> int:
    numbers = (
        [_generation_number(p.name.removesuffix(".tmp")) for p in index_dir.glob("gen-*")] if index_dir.is_dir() else []
    )
    return max(numbers, default=0)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
