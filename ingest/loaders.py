"""Find the files of a folder and extract their text, by file type.

A file that cannot be read is reported with a reason (``LoadError``) and the rest of the folder is still indexed.
Hidden files and folders (the permission policy among them) are never indexed, and not reported either.
"""

from __future__ import annotations

import codecs
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from .errors import RagError
from .types import LoadedDocument, Skipped

SUPPORTED_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"})


class LoadError(RagError):
    """A file could not be parsed; ``str(err)`` is the reason shown to the user."""


def discover(folder: Path, excluded: Iterable[Path] = ()) -> tuple[list[str], list[Skipped]]:
    """Relative paths ("/" separators) of the files to load, sorted, and the files refused with a reason."""
    root = Path(folder).resolve()
    skip_dirs = {Path(p).resolve() for p in excluded}
    sources: list[str] = []
    skipped: list[Skipped] = []
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        stat = here.stat()
        if (stat.st_dev, stat.st_ino) in seen_dirs:  # a directory symlink loop
            dirnames[:] = []
            continue
        seen_dirs.add((stat.st_dev, stat.st_ino))
        kept_dirs = []
        for name in sorted(dirnames):
            path = here / name
            if name.startswith(".") or path.resolve() in skip_dirs:
                continue
            if path.is_symlink() and not _inside(path.resolve(), root):
                skipped.append(Skipped(_relative(path, root), "symlink leaves the indexed folder; not followed"))
                continue
            kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            path = here / name
            if name.startswith(".") or path.resolve() in skip_dirs:
                continue
            source = _relative(path, root)
            if path.is_symlink() and not _inside(path.resolve(), root):
                skipped.append(Skipped(source, "symlink leaves the indexed folder; not followed"))
                continue
            if not path.is_file():
                continue
            suffix = path.suffix.lower()
            if suffix not in SUPPORTED_SUFFIXES:
                kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
                skipped.append(Skipped(source, f"unsupported file type {suffix or '(none)'!r} (supported: {kinds})"))
                continue
            if path.stat().st_size == 0:
                skipped.append(Skipped(source, "empty file"))
                continue
            sources.append(source)
    return sorted(sources), skipped


def load_file(folder: Path, source: str) -> LoadedDocument:
    path = Path(folder) / source
    suffix = path.suffix.lower()
    reader = {
        ".txt": _read_text,
        ".md": _read_text,
        ".markdown": _read_text,
        ".html": _read_html,
        ".htm": _read_html,
        ".pdf": _read_pdf,
        ".docx": _read_docx,
    }.get(suffix)
    if reader is None:
        raise LoadError(f"unsupported file type {suffix!r}")
    try:
        text, pages = reader(path)
    except LoadError:
        raise
    except Exception as err:  # noqa: BLE001 - any parser failure skips this file, with the reason
        kind = {".pdf": "broken PDF", ".docx": "broken DOCX"}.get(suffix, "cannot read file")
        raise LoadError(_one_line(f"{kind}: {type(err).__name__}: {err}")) from err
    if not text.strip():
        raise LoadError("empty file" if suffix != ".pdf" else "no extractable text (scanned PDF?)")
    return LoadedDocument(source, text, pages)


def normalise(text: str) -> str:
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else Latin-1 — but binary data is refused."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    if b"\x00" in data[:8192]:
        raise LoadError("not a text file: it contains NUL bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    sample = text[:8192]
    control = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f")
    if sample and control / len(sample) > 0.02:
        raise LoadError("not a text file: too many control characters")
    return text


def _read_text(path: Path) -> tuple[str, list]:
    return normalise(decode(path.read_bytes())), []


_BLOCK_TAGS = [
    "p",
    "div",
    "section",
    "article",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "br",
    "pre",
    "blockquote",
    "dt",
    "dd",
    "table",
    "ul",
    "ol",
    "header",
    "footer",
    "main",
    "caption",
]


def _read_html(path: Path) -> tuple[str, list]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode(path.read_bytes()), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "head", "svg", "iframe"]):
        tag.decompose()
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" | ")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip(" |") for line in soup.get_text().splitlines()]
    body = "\n".join(line for line in lines if line.strip())
    if title and not body.startswith(title):
        body = f"{title}\n{body}"
    return normalise(body), []


def _read_pdf(path: Path) -> tuple[str, list[tuple[int, int]]]:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    if reader.is_encrypted:
        raise LoadError("encrypted PDF; decrypt it first")
    parts, pages, offset = [], [], 0
    for number, page in enumerate(reader.pages, start=1):
        text = normalise(page.extract_text() or "").strip()
        if parts:
            offset += 2  # the "\n\n" that joins pages
        pages.append((offset, number))
        parts.append(text)
        offset += len(text)
    return "\n\n".join(parts), pages


def _read_docx(path: Path) -> tuple[str, list]:
    import docx

    document = docx.Document(str(path))
    blocks = [p.text for p in document.paragraphs if p.text.strip()]
    for table in document.tables:
        for row in table.rows:
            blocks.append(" | ".join(cell.text.strip() for cell in row.cells))
    return normalise("\n\n".join(blocks)), []


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _one_line(message: str, limit: int = 200) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
