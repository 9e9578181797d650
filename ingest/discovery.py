"""Find the files of a folder to index, and read them back safely: permissions follow content, never a link.

Symlinks inside the folder are never followed, for files and folders alike. A file is indexed once, under its real
path, with the permissions the policy gives that path; a link to it is reported as skipped, and so are links that
leave the folder, broken links and loops. So no link can publish a file under a more open name, and a folder link
cannot make the real folder look "already walked" (docs/security.md explains the choice).

``read_inside`` re-checks what discovery saw: every folder on the way is opened with ``O_NOFOLLOW`` relative to its
parent (``openat``), and the file opened must be the very inode (device, inode) that discovery classified. A file
swapped for a link, or for another file, between the two steps is skipped, never read.

Hidden files and folders (the permission policy among them) and the ``excluded`` paths are neither indexed nor
reported; excluded paths are compared by inode too, so a hard link to the policy is never indexed either. Every
problem with one name (not UTF-8, a loop, an unreadable folder) is a skip reason, never an exception.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import LoadError
from .plugins import plugin_loaders
from .types import Skipped

SUPPORTED_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"})


def supported_suffixes() -> frozenset[str]:
    """The built-in file types and those of the installed loader plugins (``ingest.plugins``)."""
    return SUPPORTED_SUFFIXES | frozenset(plugin_loaders())


# A guard against a dumped log or database export holding the writer lock for an hour: 16 MB of text is ~18k chunks
# (about 8 minutes of MiniLM on 2 cores). ``rag index --max-file-size`` raises it.
DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024
LEAVES_FOLDER = "symlink leaves the indexed folder; not followed"


@dataclass(frozen=True)
class Found:
    """A regular file to index, as discovery saw it (``lstat``: never through a link)."""

    source: str  # path relative to the folder, "/" separators, exactly the on-disk name
    device: int
    inode: int
    size: int
    mtime_ns: int


def discover(folder: Path, excluded: Iterable[Path] = ()) -> tuple[list[str], list[Skipped]]:
    """Relative paths ("/" separators) of the files to load, sorted, and the names refused with a reason."""
    found, skipped = walk(folder, excluded)
    return [f.source for f in found], skipped


def walk(folder: Path, excluded: Iterable[Path] = ()) -> tuple[list[Found], list[Skipped]]:
    """The regular files under ``folder`` (sorted by source) and the refused names (sorted by path)."""
    root = Path(folder).resolve()
    silent_paths, silent_ids = _identities(excluded)
    found: list[Found] = []
    skipped: list[Skipped] = []
    pending = [(str(root), "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            skipped.append(Skipped(shown(prefix.rstrip("/")), f"cannot list folder: {err.strerror or err}"))
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.path in silent_paths:
                continue
            source = prefix + entry.name
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as err:
                skipped.append(Skipped(shown(source), f"cannot read file: {err.strerror or err}"))
                continue
            if (info.st_dev, info.st_ino) in silent_ids:
                continue
            kind = "folder" if stat.S_ISDIR(info.st_mode) else "file"
            if not _is_utf8(entry.name):
                skipped.append(Skipped(shown(source), f"{kind} name is not valid UTF-8; rename it to index it"))
            elif stat.S_ISLNK(info.st_mode):
                skipped.append(Skipped(source, _link_reason(entry.path, root, silent_paths)))
            elif stat.S_ISDIR(info.st_mode):
                pending.append((entry.path, source + "/"))
            elif stat.S_ISREG(info.st_mode):
                reason = _refusal(source, info.st_size)
                if reason:
                    skipped.append(Skipped(source, reason))
                else:
                    found.append(Found(source, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))
            # sockets, FIFOs and devices are no documents: ignored silently
    return sorted(found, key=lambda f: f.source), sorted(skipped, key=lambda s: s.path)


def read_inside(folder: Path, source: str, expected: Found | None = None, max_bytes: int | None = None) -> bytes:
    """The bytes of ``folder/source``, reached without following any link; raises ``LoadError`` with a reason.

    With ``expected``, the file must still be the inode discovery saw; with ``max_bytes``, no larger than that.
    """
    parts = source.split("/")
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        parent = os.open(Path(folder).resolve(), os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise LoadError(f"cannot open the folder: {err.strerror or err}") from None
    try:
        for part in parts[:-1]:
            inner = os.open(part, nofollow | os.O_DIRECTORY, dir_fd=parent)
            os.close(parent)
            parent = inner
        fd = os.open(parts[-1], nofollow | os.O_NONBLOCK, dir_fd=parent)  # O_NONBLOCK: a FIFO swapped in can't hang
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise LoadError("changed during indexing: now a symlink; not followed (the next run looks again)") from None
        raise LoadError(f"cannot read file: {err.strerror or err}") from None
    finally:
        os.close(parent)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise LoadError("not a regular file")
        if expected is not None and (info.st_dev, info.st_ino) != (expected.device, expected.inode):
            raise LoadError("changed during indexing: replaced by another file (the next run looks again)")
        if max_bytes is not None and info.st_size > max_bytes:
            raise LoadError(too_large(info.st_size, max_bytes))
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:  # it grew while we read
        raise LoadError(too_large(len(data), max_bytes))
    return data


def too_large(size: int, limit: int) -> str:
    return f"file is {size / 1e6:.1f} MB, over the {limit / 1e6:.1f} MB limit per file; raise it with --max-file-size"


def is_case_insensitive(folder: Path) -> bool:
    """Whether the folder's file system matches names case-blind (macOS and Windows defaults): the same inode under a
    swapped-case spelling of the folder's own name, or of one of its entries."""
    root = Path(folder).resolve()
    try:
        names = sorted(os.listdir(root))[:64]
    except OSError:
        names = []
    for path in [root, *(root / name for name in names)]:
        swapped = path.name.swapcase()
        if not path.name or swapped == path.name or not _is_utf8(path.name):
            continue
        try:
            here, there = os.lstat(path), os.lstat(path.with_name(swapped))
        except OSError:
            return False  # no such name: the file system tells the spellings apart
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
    return False


def shown(source: str) -> str:
    """A name as valid text: bytes that are not UTF-8 become ``\\xe9`` escapes (for reports and JSON)."""
    return source.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def unsupported(suffix: str) -> str:
    return f"unsupported file type {suffix or '(none)'!r} (supported: {', '.join(sorted(supported_suffixes()))})"


def _refusal(source: str, size: int) -> str | None:
    suffix = Path(source).suffix.lower()
    if suffix not in supported_suffixes():
        return unsupported(suffix)
    if size == 0:
        return "empty file"  # whitespace-only files pass here and fail at loading with "empty file"
    return None


def _link_reason(path: str, root: Path, silent_paths: set[str]) -> str:
    try:
        target = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):  # Python 3.11 raises RuntimeError for a loop
        try:
            os.stat(path)
        except OSError as err:
            if err.errno == errno.ELOOP:
                return "symlink loop; not followed"
            if err.errno == errno.ENOENT:
                return "broken symlink"
            return f"symlink cannot be followed: {err.strerror or err}"
        return "symlink cannot be followed"
    if target != root and root not in target.parents:
        return LEAVES_FOLDER
    relative = target.relative_to(root).as_posix()
    hidden = any(part.startswith(".") for part in target.relative_to(root).parts)
    if hidden or str(target) in silent_paths:
        return "symlink to a hidden or excluded path; not followed"
    return f"symlink to {relative or '.'}; not followed (files are indexed once, under their real path)"


def _identities(paths: Iterable[Path]) -> tuple[set[str], set[tuple[int, int]]]:
    """Resolved path strings, and (device, inode) of those that exist."""
    resolved, ids = set(), set()
    for path in paths:
        real = Path(path).resolve()
        resolved.add(str(real))
        try:
            info = os.stat(real)
        except OSError:
            continue
        ids.add((info.st_dev, info.st_ino))
    return resolved, ids


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir decodes undecodable bytes to lone surrogates
        return False
    return True
