"""The index directory: atomic generations, a writer lock, and a consistency check on open.

Layout::

    .rag/                mode 0700; every file in it 0600 (the catalog holds every document's text)
      .docrag-index      marks the folder as ours: docrag never writes into a non-empty folder without it
      CURRENT            name of the live generation ("gen-" and digits, checked), replaced atomically
      gen-000007/        catalog.sqlite + vectors.faiss + .docrag-generation, never modified once live
      gen-000008.tmp/    a run in progress (or a killed one, removed by the next run)
      lock               held by the one writer

A run copies the live generation into a new ``.tmp`` directory, changes it there, writes and fsyncs both files,
renames the directory, and only then points CURRENT at it. A run killed at any point therefore leaves the previous
generation live and intact; readers never take the lock and never see a half-written index. Once CURRENT is durable
the previous generation is deleted, so a deleted document's text does not linger in it; a reader that had just read
the old name retries with the new one. Only folders carrying our marker are ever deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .catalog import FORMAT_VERSION, Catalog
from .common import UsageError
from .errors import IndexBusyError, IndexCorruptError, IndexNotFoundError
from .vectors import VectorIndex

CATALOG_FILE = "catalog.sqlite"
VECTORS_FILE = "vectors.faiss"
INDEX_MARKER = ".docrag-index"
GENERATION_MARKER = ".docrag-generation"
_GENERATION_NAME = re.compile(r"gen-(\d{6,})")
OPEN_RETRIES = 3  # a reader racing a writer's pruning sees CURRENT move at most this often in a row


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
    """The live generation's name; a CURRENT that is not a plain generation name (a path, "..") is refused."""
    try:
        name = (Path(index_dir) / "CURRENT").read_text(errors="replace").strip()
    except FileNotFoundError:
        return None
    if name and not _GENERATION_NAME.fullmatch(name):
        raise IndexCorruptError(
            f"index at {index_dir}: CURRENT names {name[:40]!r}, not a generation like 'gen-000001'; "
            "repair with `rag index PATH --rebuild`"
        )
    return name or None


def recorded_meta(index_dir: Path, key: str):
    """One metadata value of the live generation, read without any check; None where there is none to read."""
    try:
        generation = current_generation(index_dir)
        if generation is None:
            return None
        catalog = Catalog(Path(index_dir) / generation / CATALOG_FILE, readonly=True)
    except (IndexCorruptError, OSError):
        return None
    try:
        return catalog.get_meta(key)
    except sqlite3.DatabaseError:
        return None
    finally:
        catalog.close()


def open_index(index_dir: Path, check: bool = True) -> OpenIndex:
    """Open the live generation. Raises IndexNotFoundError or IndexCorruptError, never returns a partial index."""
    index_dir = Path(index_dir)
    for _ in range(OPEN_RETRIES):
        generation = current_generation(index_dir)
        if generation is None:
            raise IndexNotFoundError(
                f"no index at {index_dir}; create one with `rag index PATH --index-dir {index_dir}`"
            )
        try:
            return _open_generation(index_dir, generation, check)
        except IndexCorruptError:
            if current_generation(index_dir) == generation:
                raise
            # A writer made a new generation live and deleted this one while we opened it: read the new one.
    raise IndexCorruptError(f"index at {index_dir} changed {OPEN_RETRIES} times while being opened; try again")


def _open_generation(index_dir: Path, generation: str, check: bool) -> OpenIndex:
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
    try:
        vectors = VectorIndex.load(gen_dir / VECTORS_FILE)
    except IndexCorruptError:
        catalog.close()
        raise
    index = OpenIndex(index_dir, generation, catalog, vectors)
    if check:
        verify(index)
    return index


def verify(index: OpenIndex) -> None:
    """The catalog and FAISS must hold exactly the same chunk ids."""
    try:
        n_catalog, n_vectors = index.catalog.chunk_count(), index.vectors.ntotal
        problem = None
        if n_catalog != n_vectors:
            problem = f"the catalog has {n_catalog} chunks but FAISS has {n_vectors} vectors"
        elif set(index.catalog.chunk_ids()) != set(int(i) for i in index.vectors.ids()):
            problem = "the catalog's chunk ids differ from FAISS's ids"
    except sqlite3.DatabaseError as err:
        problem = f"the catalog is damaged ({err})"
    if problem:
        index.close()
        raise IndexCorruptError(
            f"index at {index.directory} is inconsistent: {problem}; repair with `rag index PATH --rebuild`"
        )


@contextlib.contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """One writer per index dir. A second one fails at once with a clear message rather than queueing silently."""
    import fcntl

    claim_index_dir(index_dir)
    path = index_dir / "lock"
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+")
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


def claim_index_dir(index_dir: Path) -> None:
    """Create the index dir (0700) and mark it ours; refuse a non-empty folder that is not a docrag index."""
    index_dir = Path(index_dir)
    if not index_dir.exists():
        index_dir.mkdir(parents=True, mode=0o700)
    elif not (index_dir / INDEX_MARKER).exists():
        live = current_generation(index_dir)
        if live is None and any(index_dir.iterdir()):
            raise UsageError(
                f"--index-dir {index_dir} is a folder that holds other files and no docrag index; docrag writes and "
                "deletes files in its index dir, so give an empty or new folder"
            )
        for gen_dir in index_dir.glob("gen-*"):  # an index written before markers: adopt its complete generations
            if all((gen_dir / name).is_file() for name in (CATALOG_FILE, VECTORS_FILE)):
                _create_private(gen_dir / GENERATION_MARKER, gen_dir.name + "\n")
    os.chmod(index_dir, 0o700)  # also tightens an index written before permissions were set
    _create_private(
        index_dir / INDEX_MARKER, "docrag index directory: files here are written and removed by rag index\n"
    )


class GenerationWriter:
    """Builds the next generation in a temporary directory; ``commit()`` makes it live atomically.

    ``compact`` VACUUMs the catalog before commit: its file then holds no page of deleted text (``--purge``).
    """

    def __init__(
        self, index_dir: Path, dimension: int, kind: str = "flat", rebuild: bool = False, compact: bool = False
    ) -> None:
        self.index_dir = Path(index_dir)
        self.compact = compact
        self.previous = None if rebuild else current_generation(self.index_dir)
        claim_index_dir(self.index_dir)
        for stale in _our_generations(self.index_dir, temporary=True):
            shutil.rmtree(stale, ignore_errors=True)
        number = _generation_number(self.previous) + 1 if self.previous else _highest_number(self.index_dir) + 1
        self.name = f"gen-{number:06d}"
        self.tmp_dir = self.index_dir / f"{self.name}.tmp"
        self.tmp_dir.mkdir(mode=0o700)
        _create_private(self.tmp_dir / GENERATION_MARKER, self.name + "\n")
        _create_private(self.tmp_dir / CATALOG_FILE, "")  # 0600 before any text is in it; SQLite keeps the mode
        if self.previous:
            live = open_index(self.index_dir, check=True)
            live.catalog.backup_to(self.tmp_dir / CATALOG_FILE)
            self.vectors = live.vectors
            live.close()
        else:
            self.vectors = VectorIndex.create(dimension, kind=kind)
        self.catalog = Catalog(self.tmp_dir / CATALOG_FILE)

    def commit(self) -> None:
        _create_private(self.tmp_dir / VECTORS_FILE, "")
        self.vectors.save(self.tmp_dir / VECTORS_FILE)
        self._commit_catalog()
        for name in (VECTORS_FILE, CATALOG_FILE):
            _fsync(self.tmp_dir / name)
        final = self.index_dir / self.name
        if (final / GENERATION_MARKER).exists():  # a leftover of a run killed after its rename, before CURRENT moved
            shutil.rmtree(final)
        os.replace(self.tmp_dir, final)
        _atomic_write(self.index_dir / "CURRENT", self.name + "\n")
        for old in _our_generations(self.index_dir, temporary=False):  # CURRENT is durable: the rest can go
            if old.name != self.name:
                shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        self.catalog.close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def _commit_catalog(self) -> None:
        self.catalog.finish_writing(vacuum=self.compact)
        self.catalog.close()


def _our_generations(index_dir: Path, temporary: bool) -> list[Path]:
    """Generation folders this index wrote (named so and marked), finished ones or ``.tmp`` ones."""
    out = []
    for path in index_dir.glob("gen-*"):
        name = path.name.removesuffix(".tmp")
        if (
            (path.name != name) == temporary
            and _GENERATION_NAME.fullmatch(name)
            and (path / GENERATION_MARKER).is_file()
        ):
            out.append(path)
    return out


def _generation_number(name: str) -> int:
    return int(name.split("-")[1])


def _highest_number(index_dir: Path) -> int:
    names = [p.name.removesuffix(".tmp") for p in index_dir.glob("gen-*")] if index_dir.is_dir() else []
    return max((_generation_number(n) for n in names if _GENERATION_NAME.fullmatch(n)), default=0)


def _create_private(path: Path, text: str) -> None:
    """Create (or tighten) ``path`` with mode 0600; write ``text`` when the file is new."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
