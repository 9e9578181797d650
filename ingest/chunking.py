"""Split a document into token-bounded chunks with exact character offsets.

langchain-text-splitters does the recursive splitting (paragraphs, then lines, sentences, words); we measure
length with the embedder's own tokenizer so a chunk always fits its window, and we recover each chunk's offsets
by locating its text in the document, so ``chunk.text == document.text[start:end]`` holds by construction.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable

from .types import Chunk, LoadedDocument

DEFAULT_CHUNK_TOKENS = 200  # MiniLM's window is 256 word pieces; leave room for the heading context and specials
DEFAULT_OVERLAP_TOKENS = 30

# Headings first so a Markdown section starts a new chunk when it can; then paragraphs, lines, sentences, words.
_SEPARATORS = [r"\n(?=#{1,6} )", r"\n\n+", r"\n", r"(?<=[.!?])\s+", r"\s+", r""]
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_MARKDOWN_SUFFIXES = (".md", ".markdown")


class Chunker:
    """Recursive, token-bounded chunking.

    ``token_len`` counts tokens the way the embedder does (``Embedder.token_len``).
    """

    def __init__(
        self,
        token_len: Callable[[str], int],
        chunk_size: int = DEFAULT_CHUNK_TOKENS,
        overlap: int = DEFAULT_OVERLAP_TOKENS,
    ) -> None:
        if chunk_size <= 0 or not 0 <= overlap < chunk_size:
            raise ValueError(f"need chunk_size > overlap >= 0, got chunk_size={chunk_size}, overlap={overlap}")
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self.chunk_size = chunk_size
        self.overlap = overlap
        self._splitter = RecursiveCharacterTextSplitter(
            separators=_SEPARATORS,
            is_separator_regex=True,
            keep_separator="start",
            chunk_size=chunk_size,
            chunk_overlap=overlap,
            length_function=token_len,
            strip_whitespace=True,
        )

    def split(self, doc: LoadedDocument) -> list[Chunk]:
        pieces = self._splitter.split_text(doc.text)
        headings = _heading_index(doc.text) if doc.source.lower().endswith(_MARKDOWN_SUFFIXES) else None
        chunks: list[Chunk] = []
        cursor = 0
        for piece in pieces:
            start = _locate(doc.text, piece, cursor)
            end = start + len(piece)
            # Overlapping chunks start before the previous end; search from just past the previous start.
            cursor = start + 1
            chunks.append(
                Chunk(
                    start=start,
                    end=end,
                    text=piece,
                    page=page_at(doc.pages, start),
                    heading=headings.path_at(start) if headings else "",
                )
            )
        return chunks


def _locate(text: str, piece: str, cursor: int) -> int:
    position = text.find(piece, cursor)
    if position < 0:  # the splitter only ever strips whitespace, so the piece is somewhere earlier
        position = text.find(piece)
    if position < 0:
        raise ValueError("chunk text not found in its document; the splitter altered the text")
    return position


def page_at(pages: list[tuple[int, int]], offset: int) -> int | None:
    """The page number that contains ``offset``; None for formats without pages."""
    if not pages:
        return None
    starts = [start for start, _ in pages]
    return pages[max(0, bisect.bisect_right(starts, offset) - 1)][1]


class _HeadingIndex:
    """For any offset, the Markdown heading path above it ("Setup > Installing")."""

    def __init__(self, entries: list[tuple[int, int, str]]) -> None:
        self._starts = [offset for offset, _, _ in entries]
        self._paths: list[str] = []
        stack: list[tuple[int, str]] = []
        for _, level, title in entries:
            stack = [(lvl, t) for lvl, t in stack if lvl < level] + [(level, title)]
            self._paths.append(" > ".join(t for _, t in stack))

    def path_at(self, offset: int) -> str:
        i = bisect.bisect_right(self._starts, offset) - 1
        return self._paths[i] if i >= 0 else ""


def _heading_index(text: str) -> _HeadingIndex:
    return _HeadingIndex([(m.start(), len(m.group(1)), m.group(2).strip()) for m in _HEADING.finditer(text)])
