"""Plain data types passed between the ingest stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoadedDocument:
    """The extracted text of one file.

    ``pages`` maps character offsets to page numbers: ``(start_offset, page_number)`` pairs in increasing order,
    the first at offset 0. Formats without pages (text, Markdown, HTML) leave it empty.
    """

    source: str  # path relative to the indexed folder, "/" separators
    text: str
    pages: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Chunk:
    """A span of a document's text. Invariant: ``text == document.text[start:end]``."""

    start: int
    end: int
    text: str
    page: int | None = None
    heading: str = ""  # Markdown heading path above the chunk; embedded with it as context, not part of ``text``


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why (shown to the user, and in ``index --json``)."""

    path: str
    reason: str
