"""Extract the text of a file's bytes, by file type.

A file that cannot be parsed is reported with a reason (``LoadError``) and the rest of the folder is still indexed.
Finding the files and reading their bytes safely is ``discovery.py``'s job; this module only parses bytes, so what
is hashed is exactly what is parsed. Installed packages add file types through the ``docrag.loaders`` entry-point
group (``ingest.plugins``). ``LoadedDocument.text`` is the canonical text: chunk offsets point into it.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
from pathlib import Path

from .discovery import SUPPORTED_SUFFIXES, discover, read_inside, supported_suffixes, unsupported
from .errors import LoadError, NoTextError
from .plugins import plugin_loaders, read_with_plugin
from .types import LoadedDocument

__all__ = ["SUPPORTED_SUFFIXES", "LoadError", "discover", "load_bytes", "load_file"]


def load_file(folder: Path, source: str) -> LoadedDocument:
    """Extract the text of ``folder/source`` (reached without following links); raises ``LoadError``."""
    return load_bytes(source, read_inside(folder, source))


def load_bytes(source: str, data: bytes) -> LoadedDocument:
    """Extract the text of a file's content; ``source`` names it and its suffix picks the parser."""
    suffix = Path(source).suffix.lower()
    if suffix not in supported_suffixes():
        raise LoadError(unsupported(suffix))
    plugin = suffix in plugin_loaders()
    builtin = {".html": _read_html, ".htm": _read_html, ".pdf": _read_pdf, ".docx": _read_docx}.get(suffix, _read_text)
    try:
        text, pages = (normalise(read_with_plugin(suffix, data)), []) if plugin else builtin(data)
    except LoadError:
        raise
    except Exception as err:  # noqa: BLE001 - any parser or plugin failure skips this file, with the reason
        kind = {".pdf": "broken PDF", ".docx": "broken DOCX"}.get(suffix, "cannot read file")
        kind = "loader plugin failed" if plugin else kind
        raise LoadError(_one_line(f"{kind}: {type(err).__name__}: {err}")) from err
    if not text.strip():
        raise NoTextError("no extractable text (scanned PDF?)" if suffix == ".pdf" else "empty file")
    return LoadedDocument(source, text, pages)


def normalise(text: str) -> str:
    """Drop a leading BOM, turn CRLF and lone CR into LF, compose to NFC; keep everything else."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # C0 and C1 controls, less \t \n \v \f \r


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-32/UTF-16 with BOM, else Windows-1252/Latin-1; binary data is refused."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError:
                raise LoadError(f"not text: invalid {codec.upper()} after a {codec.upper()} byte-order mark") from None
            break
    else:
        if b"\x00" in data:
            raise LoadError("not text: contains NUL bytes")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            # Windows-1252 is what "Latin-1" text usually is (curly quotes at 0x93/0x94); Latin-1 takes any byte.
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
    controls = len(_CONTROL.findall(text))
    if "\x00" in text or controls > max(2, len(text) // 20):  # random bytes: about a quarter are controls
        raise LoadError(f"not text: too many control characters ({controls} in {len(text)})")
    return text


def _read_text(data: bytes) -> tuple[str, list]:
    return normalise(decode(data)), []


_DROP_TAGS = ["script", "style", "noscript", "template", "head", "svg", "iframe", "object", "canvas"]
_LINE_TAGS = ["li", "tr", "br", "dt", "dd", "caption", "figcaption", "option"]  # a line break around each
_PARAGRAPH_TAGS = [  # a blank line around each, so the chunker splits there first
    *("p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "blockquote", "pre"),
    *("h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "form", "figure", "address", "hr"),
]
_LINE, _PARAGRAPH = "\ue000", "\ue001"  # markers for the breaks between blocks, resolved after extraction
_BREAKS = re.compile(f"\\s*[{_LINE}{_PARAGRAPH}][\\s{_LINE}{_PARAGRAPH}]*")


def _read_html(data: bytes) -> tuple[str, list]:
    from bs4 import BeautifulSoup, NavigableString

    soup = BeautifulSoup(decode(data), "html.parser")
    title = " ".join(soup.title.get_text().split()) if soup.title else ""
    for tag in soup.find_all(_DROP_TAGS) + soup.find_all(attrs={"hidden": True}):
        if not tag.decomposed:  # not already gone with an enclosing tag
            tag.decompose()
    for string in soup.find_all(string=True):  # collapse source line wrapping, as a browser does (not in <pre>)
        if type(string) is NavigableString and string.find_parent("pre") is None:
            string.replace_with(re.sub(r"[\s\ue000\ue001]+", " ", str(string)))
    for cell in soup.find_all(["td", "th"]):
        if cell.find_next_sibling(["td", "th"]):
            cell.insert_after(" | ")
    for tags, marker in ((_LINE_TAGS, _LINE), (_PARAGRAPH_TAGS, _PARAGRAPH)):
        for tag in soup.find_all(tags):
            tag.insert_before(marker)
            tag.insert_after(marker)
    text = _BREAKS.sub(lambda m: "\n\n" if _PARAGRAPH in m.group() else "\n", soup.get_text())
    body = text.strip()
    if title and not body.startswith(title):
        body = f"{title}\n\n{body}"
    return normalise(body), []


def _read_pdf(data: bytes) -> tuple[str, list[tuple[int, int]]]:
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its repair warnings would be noise; failures raise
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # many PDFs are "encrypted" with an empty password, for permissions only
        except Exception:  # noqa: BLE001 - e.g. AES without the cryptography package
            opened = 0
        if not opened:
            raise LoadError("encrypted PDF (needs a password); decrypt it first")
    parts: list[str] = []
    pages: list[tuple[int, int]] = []
    offset = 0
    for number, page in enumerate(reader.pages, start=1):
        text = normalise(page.extract_text() or "").strip()
        if parts:
            offset += 2  # the "\n\n" that joins pages
        pages.append((offset, number))
        parts.append(text)
        offset += len(text)
    return "\n\n".join(parts), pages


def _read_docx(data: bytes) -> tuple[str, list]:
    import docx
    from docx.table import Table

    blocks = []
    for block in docx.Document(io.BytesIO(data)).iter_inner_content():  # paragraphs and tables, in document order
        if isinstance(block, Table):
            rows = []
            for row in block.rows:
                cells, seen = [], set()
                for cell in row.cells:
                    if id(cell._tc) not in seen:  # a merged cell is listed once per grid column it spans
                        seen.add(id(cell._tc))
                        cells.append(" ".join(cell.text.split()))
                rows.append(" | ".join(cells))
            blocks.append("\n".join(rows))
        elif block.text.strip():
            blocks.append(block.text)
    return normalise("\n\n".join(blocks)), []


def _one_line(message: str, limit: int = 200) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
