import re

import pytest

from ingest.chunking import Chunker, page_at
from ingest.types import LoadedDocument


def words(text: str) -> int:
    return len(re.findall(r"\S+", text))


def make_doc(source="notes.md", paragraphs=30, pages=()):
    text = "# Guide\n\nIntro line.\n\n" + "\n\n".join(
        f"## Part {i}\n\n" + " ".join(f"w{i}_{j}." for j in range(25)) for i in range(paragraphs)
    )
    return LoadedDocument(source, text, list(pages))


def test_chunk_text_equals_document_slice_and_respects_size():
    doc = make_doc()
    chunks = Chunker(words, chunk_size=40, overlap=8).split(doc)
    assert len(chunks) > 10
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert words(chunk.text) <= 40


def test_chunks_cover_every_word_in_order():
    doc = make_doc()
    chunks = Chunker(words, chunk_size=40, overlap=8).split(doc)
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    for match in re.finditer(r"\S+", doc.text):
        assert match.start() in covered, match.group()


def test_markdown_heading_path_is_recorded():
    doc = make_doc()
    chunks = Chunker(words, chunk_size=40, overlap=0).split(doc)
    part7 = next(c for c in chunks if "w7_3." in c.text)
    assert part7.heading == "Guide > Part 7"


def test_headings_only_for_markdown():
    doc = LoadedDocument("notes.txt", make_doc().text)
    assert all(c.heading == "" for c in Chunker(words, 40, 0).split(doc))


def test_pages_are_mapped_from_offsets():
    doc = LoadedDocument("a.pdf", "page one text\n\npage two text", [(0, 1), (15, 2)])
    assert page_at(doc.pages, 0) == 1 and page_at(doc.pages, 14) == 1 and page_at(doc.pages, 15) == 2
    chunks = Chunker(words, chunk_size=3, overlap=0).split(doc)
    assert [c.page for c in chunks] == [1, 2]


def test_crlf_free_text_with_repeated_paragraphs_gets_distinct_offsets():
    text = "\n\n".join(["same paragraph text here"] * 6)
    chunks = Chunker(words, chunk_size=4, overlap=0).split(LoadedDocument("r.txt", text))
    assert len({c.start for c in chunks}) == len(chunks) == 6


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="chunk_size"):
        Chunker(words, chunk_size=10, overlap=10)
