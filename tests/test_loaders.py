import os
import random
from pathlib import Path

import pytest

from ingest.common import RagError
from ingest.loaders import SUPPORTED_SUFFIXES, LoadError, discover, load_file
from ingest.types import Skipped


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    return folder


def put(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def make_pdf(pages: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def reasons(skipped: list[Skipped]) -> dict[str, str]:
    return {s.path: s.reason for s in skipped}


# --- text and Markdown -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Grüße aus Köln\n".encode(), "Grüße aus Köln\n"),
        (b"\xef\xbb\xbfwith a BOM\n", "with a BOM\n"),
        ("UTF-16 café\r\n".encode("utf-16"), "UTF-16 café\n"),
        ("UTF-16 big-endian ñ".encode("utf-16-be").join([b"\xfe\xff", b""]), "UTF-16 big-endian ñ"),
        ("café au lait, naïve".encode("latin-1"), "café au lait, naïve"),
        (b"\x93smart quotes\x94 cost \x80 5", "\u201csmart quotes\u201d cost \u20ac 5"),  # Windows-1252
        (b"one\r\ntwo\rthree\n", "one\ntwo\nthree\n"),
        ("cafe\u0301".encode(), "caf\u00e9"),  # NFC: e + combining acute -> é
        (b"keeps  inner   spacing\n\n\n  and blank lines  \n", "keeps  inner   spacing\n\n\n  and blank lines  \n"),
    ],
    ids=["utf8", "utf8-bom", "utf16-bom", "utf16be-bom", "latin1", "cp1252", "crlf-cr", "nfc", "verbatim"],
)
def test_text_encodings_and_newlines(docs, data, expected):
    put(docs, "note.txt", data)
    doc = load_file(docs, "note.txt")
    assert doc.text == expected
    assert doc.source == "note.txt" and doc.pages == []


def test_markdown_is_loaded_verbatim(docs):
    text = "# Title\n\nSome *emphasis* and a [link](http://x).\n\n## Part\n\n- item\n"
    put(docs, "guide/readme.md", text)
    put(docs, "guide/other.markdown", text)
    assert load_file(docs, "guide/readme.md").text == text
    assert load_file(docs, "guide/other.markdown").text == text


@pytest.mark.parametrize(
    "data",
    [
        random.Random(0).randbytes(4096),
        bytes(range(1, 32)) * 50 + b"some text",  # control characters, no NUL
        b"\xff\xfe" + random.Random(2).randbytes(4096),  # a UTF-16 byte-order mark in front of garbage
        b"\xff\xfe" + b"\x01\x00\x02\x00" * 500,  # valid UTF-16, but all control characters
    ],
    ids=["random", "controls", "bom-garbage", "bom-controls"],
)
def test_binary_named_txt_is_rejected(docs, data):
    put(docs, "blob.txt", data)
    with pytest.raises(LoadError, match=r"^not text: "):
        load_file(docs, "blob.txt")


def test_whitespace_only_file_is_empty(docs):
    put(docs, "blank.md", " \n\t\r\n ")
    with pytest.raises(LoadError, match="^empty file$"):
        load_file(docs, "blank.md")


# --- HTML --------------------------------------------------------------------------------------------------------


HTML = """<!DOCTYPE html>
<html><head><title>Harbour   Guide</title>
<style>body { color: styleword; }</style>
<script>var SCRIPTWORD = 1;</script>
<meta name="description" content="HEADWORD"></head>
<body>
<h1>Opening hours</h1>
<p>The harbour office opens
   at eight and closes at five.</p>
<!-- COMMENTWORD -->
<noscript>NOSCRIPTWORD</noscript><template><p>TEMPLATEWORD</p></template>
<div hidden>HIDDENWORD</div>
<ul><li>Monday</li><li>Tuesday <b>late</b></li></ul>
<table><tr><th>Berth</th><th>Fee</th></tr><tr><td>A1</td><td>40 EUR</td></tr></table>
<pre>
line one
  line two
</pre>
<script type="application/ld+json">{"JSONWORD": 1}</script>
</body></html>
"""


def test_html_visible_text_with_block_structure(docs):
    put(docs, "site/page.html", HTML)
    text = load_file(docs, "site/page.html").text
    for hidden in ("SCRIPTWORD", "styleword", "HEADWORD", "COMMENTWORD", "NOSCRIPTWORD", "TEMPLATEWORD",
                   "HIDDENWORD", "JSONWORD", "DOCTYPE"):  # fmt: skip
        assert hidden not in text
    assert text == (
        "Harbour Guide\n\n"  # the title first, then one blank line between blocks
        "Opening hours\n\n"
        "The harbour office opens at eight and closes at five.\n\n"  # source line wrapping collapsed
        "Monday\nTuesday late\n\n"  # one list item a line
        "Berth | Fee\nA1 | 40 EUR\n\n"  # one table row a line
        "line one\n  line two"  # <pre> keeps its layout
    )


def test_htm_without_title(docs):
    put(docs, "a.htm", "<p>Just one paragraph.</p><p>And a second.</p>")
    assert load_file(docs, "a.htm").text == "Just one paragraph.\n\nAnd a second."


def test_html_with_only_script_is_empty(docs):
    put(docs, "x.html", "<html><body><script>alert(1)</script></body></html>")
    with pytest.raises(LoadError, match="^empty file$"):
        load_file(docs, "x.html")


# --- PDF ---------------------------------------------------------------------------------------------------------


def test_multi_page_pdf_keeps_page_offsets(docs):
    pages = ["Alpha page talks about anchors.", "Bravo page covers buoys.\nSecond line of bravo.", "Charlie ends."]
    put(docs, "manual.pdf", make_pdf(pages))
    doc = load_file(docs, "manual.pdf")
    assert [number for _, number in doc.pages] == [1, 2, 3]
    starts = [start for start, _ in doc.pages]
    assert starts[0] == 0 and starts == sorted(starts)
    for (start, _), end, expected in zip(doc.pages, [*starts[1:], None], pages):
        segment = doc.text[start:end]
        assert segment.strip() == expected
    assert all(doc.text[start - 2 : start] == "\n\n" for start in starts[1:])


def test_pdf_without_text_is_reported_as_scanned(docs):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")  # an image-only page, as a scanner would make
    put(docs, "scan.pdf", bytes(pdf.output()))
    with pytest.raises(LoadError, match=r"^no extractable text \(scanned PDF\?\)$"):
        load_file(docs, "scan.pdf")


def test_encrypted_pdf_needs_password_but_empty_password_opens(docs):
    from fpdf import FPDF

    for name, user_password in (("locked.pdf", "secret"), ("open.pdf", "")):
        pdf = FPDF()
        pdf.add_page()
        pdf.set_encryption(owner_password="owner", user_password=user_password, encryption_method="RC4")
        pdf.set_font("helvetica", size=12)
        pdf.cell(0, 8, "Encrypted words")
        put(docs, name, bytes(pdf.output()))
    with pytest.raises(LoadError, match="^encrypted PDF"):
        load_file(docs, "locked.pdf")
    assert load_file(docs, "open.pdf").text == "Encrypted words"


def test_broken_files_fail_alone_with_reasons(docs):
    """What sync does: every discovered file is loaded; broken ones give a reason, the rest still load."""
    good_pdf = make_pdf(["Fine page."])
    put(docs, "good.pdf", good_pdf)
    put(docs, "truncated.pdf", good_pdf[: len(good_pdf) // 2])
    put(docs, "garbage.txt", random.Random(1).randbytes(2048))
    put(docs, "broken.docx", b"PK\x03\x04 not really a zip")
    put(docs, "notes.md", "# Notes\n\nStill indexed.")
    sources, skipped = discover(docs)
    assert sources == ["broken.docx", "garbage.txt", "good.pdf", "notes.md", "truncated.pdf"]
    assert skipped == []
    loaded, failed = {}, {}
    for source in sources:
        try:
            loaded[source] = load_file(docs, source).text
        except LoadError as err:
            failed[source] = str(err)
    assert loaded == {"good.pdf": "Fine page.", "notes.md": "# Notes\n\nStill indexed."}
    assert failed["truncated.pdf"].startswith("broken PDF: ")
    assert failed["garbage.txt"].startswith("not text: ")
    assert failed["broken.docx"].startswith("broken DOCX: ")
    assert all("\n" not in reason and len(reason) <= 200 for reason in failed.values())


# --- DOCX --------------------------------------------------------------------------------------------------------


def test_docx_paragraphs_and_tables_in_order(docs):
    import docx

    document = docx.Document()
    document.add_heading("Travel policy", level=1)
    document.add_paragraph("Book trains for trips under 600 km.")
    document.add_paragraph("")  # empty paragraphs are dropped
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([("Class", "Limit", "Approver"), ("Rail", "200", "Manager"), ("Note", "", "")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(2, 1).merge(table.cell(2, 2)).text = "ask finance"
    document.add_paragraph("Receipts within 30 days.")
    document.save(docs / "policy.docx")

    text = load_file(docs, "policy.docx").text
    assert text == (
        "Travel policy\n\nBook trains for trips under 600 km.\n\n"
        "Class | Limit | Approver\nRail | 200 | Manager\nNote | ask finance\n\n"
        "Receipts within 30 days."
    )


# --- discovery ---------------------------------------------------------------------------------------------------


def test_discover_sorted_relative_posix_paths(docs):
    for name in ("b.txt", "a/z.md", "a/b/c.html", "A.md", "x.PDF"):
        put(docs, name, "text")
    sources, skipped = discover(docs)
    assert sources == ["A.md", "a/b/c.html", "a/z.md", "b.txt", "x.PDF"]
    assert skipped == []


def test_discover_reports_unsupported_and_empty(docs):
    put(docs, "sheet.xlsx", b"PK\x03\x04data")
    put(docs, "Makefile", "all:\n")
    put(docs, "empty.txt", b"")
    put(docs, "ok.txt", "hello")
    sources, skipped = discover(docs)
    assert sources == ["ok.txt"]
    why = reasons(skipped)
    assert set(why) == {"sheet.xlsx", "Makefile", "empty.txt"}
    assert why["sheet.xlsx"].startswith("unsupported file type '.xlsx' (supported: .docx, .htm, .html, .markdown")
    assert all(suffix in why["sheet.xlsx"] for suffix in SUPPORTED_SUFFIXES)
    assert why["Makefile"].startswith("unsupported file type '(none)'")
    assert why["empty.txt"] == "empty file"
    with pytest.raises(LoadError, match="unsupported file type '.xlsx'"):
        load_file(docs, "sheet.xlsx")


def test_hidden_policy_and_excluded_paths_are_silent(docs, tmp_path):
    put(docs, ".git/config", "[core]")
    put(docs, ".hidden.md", "secret")
    put(docs, "sub/.draft.txt", "draft")
    put(docs, ".rag-acl.toml", 'default = "allow"')
    put(docs, ".rag/catalog.bin", b"\x00\x01")
    put(docs, "index/gen-1/data.txt", "index data")  # an index dir inside the folder, passed in `excluded`
    put(docs, "acl.toml", 'default = "deny"')  # an --acl file inside the folder
    put(docs, "sub/visible.md", "shown")
    sources, skipped = discover(docs, excluded=[docs / "index", docs / "acl.toml"])
    assert sources == ["sub/visible.md"]
    assert skipped == []
    # relative and unresolved spellings of the excluded paths work too
    os.chdir(docs)
    assert discover(Path("."), excluded=[Path("index"), Path("sub/../acl.toml")]) == (["sub/visible.md"], [])


def test_symlinks_are_reported_not_followed(docs, tmp_path):
    outside = tmp_path / "outside"
    put(outside, "secret.txt", "OUTSIDE")
    put(outside, "more/inner.md", "OUTSIDE too")
    put(docs, "real/doc.md", "inside")
    (docs / "escape.txt").symlink_to(outside / "secret.txt")
    (docs / "escape-dir").symlink_to(outside, target_is_directory=True)
    (docs / "alias.md").symlink_to(docs / "real/doc.md")  # stays inside: indexed once, under its real name
    (docs / "dangling.md").symlink_to(docs / "gone.md")
    sources, skipped = discover(docs)
    assert sources == ["real/doc.md"]
    assert reasons(skipped) == {
        "alias.md": "symlink to real/doc.md; not followed (files are indexed once, under their real path)",
        "dangling.md": "broken symlink",
        "escape-dir": "symlink leaves the indexed folder; not followed",
        "escape.txt": "symlink leaves the indexed folder; not followed",
    }
    with pytest.raises(LoadError, match="now a symlink; not followed"):
        load_file(docs, "alias.md")


def test_directory_symlink_loops_end(docs):
    put(docs, "a/doc.md", "once")
    (docs / "a/loop").symlink_to(docs, target_is_directory=True)  # a -> root -> a -> ...
    (docs / "a/self").symlink_to(docs / "a", target_is_directory=True)
    (docs / "z-alias").symlink_to(docs / "a", target_is_directory=True)  # an alias of a folder that is walked anyway
    sources, skipped = discover(docs)
    assert sources == ["a/doc.md"]
    assert reasons(skipped) == {
        "a/loop": "symlink to .; not followed (files are indexed once, under their real path)",
        "a/self": "symlink to a; not followed (files are indexed once, under their real path)",
        "z-alias": "symlink to a; not followed (files are indexed once, under their real path)",
    }


def test_folder_given_through_a_symlink(docs, tmp_path):
    put(docs, "n.txt", "via link")
    link = tmp_path / "link"
    link.symlink_to(docs, target_is_directory=True)
    assert discover(link) == (["n.txt"], [])
    assert load_file(link, "n.txt").text == "via link"


def test_load_error_is_a_rag_error():
    assert issubclass(LoadError, RagError)
    assert str(LoadError("broken PDF: x")) == "broken PDF: x"
