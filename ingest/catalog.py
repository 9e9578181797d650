"""The catalog: an SQLite file holding documents, chunks, their keyword index and the index's metadata.

It is the source of truth for permissions (each document's principals) and for chunk text and offsets; the FAISS
file beside it holds only vectors keyed by chunk id. ``store.py`` keeps the two in step.

``chunks_fts`` is an FTS5 table (rowid = chunk id) for the BM25 half of hybrid search. It is written and deleted
explicitly next to ``chunks`` in ``add_chunks`` / ``delete_document`` rather than by triggers, so that all the
bookkeeping of a chunk's rows is in one place and its title (from the document's source) needs no join.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import IndexCorruptError
from .types import Chunk

# 2: adds chunks_fts. An index of an older format is refused with "rebuild it" (see store.open_index).
FORMAT_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    principals TEXT NOT NULL            -- JSON list, e.g. ["group:finance", "user:carol"]; [] = nobody
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,             -- also the FAISS id
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    page INTEGER,
    heading TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    title, heading, text, tokenize='porter unicode61 remove_diacritics 2'
);
"""
# BM25 column weights for (title, heading, text): a file name is a short, strong hint, but a word there is shared by
# every chunk of the document, so it counts half of one in the chunk's own text.
_BM25 = "bm25(chunks_fts, 0.5, 1.0, 1.0)"
# Words too common to rank by, question words included: most queries are questions.
_STOPWORDS = frozenset(
    "a an and are as at be by can did do does for from had has have how i in is it its of on or our that the "
    "their there this to was we were what when where which who whom why will with you your".split()
)
_MAX_TERMS = 64  # a pasted paragraph stays a cheap query
_TOKEN = re.compile(r"[^\W_]+")  # runs of letters and digits: what unicode61 keeps as token characters


def document_title(source: str) -> str:
    """A document's name as words ("travel-policy_2031.md" -> "travel policy 2031"): embedded and keyword-indexed
    with each of its chunks as context."""
    return Path(source).stem.replace("_", " ").replace("-", " ")


def match_expression(query: str) -> str:
    """An FTS5 MATCH expression for free text: its words, each double-quoted, joined with OR; "" if none is left.

    Every term is a quoted string of letters and digits only, so FTS5 syntax in user input (quotes, ``*``, ``:``,
    ``NEAR(``, ``AND``/``NOT``, parentheses, ``^``) can neither break the query nor change what it matches.
    """
    terms: list[str] = []
    for token in (t.lower() for t in _TOKEN.findall(query)):  # split first: "İ".lower() adds a combining mark
        if len(token) > 1 and token not in _STOPWORDS and token not in terms:
            terms.append(token)
    return " OR ".join(f'"{term}"' for term in terms[:_MAX_TERMS])


@dataclass(frozen=True)
class DocumentRecord:
    id: int
    source: str
    hash: str
    mtime_ns: int
    size: int
    principals: frozenset[str]


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    doc_id: int
    source: str
    start: int
    end: int
    page: int | None
    heading: str
    text: str
    lead: str = ""  # the opening of the chunk's document (see LEAD_CHARS); filled by chunks_by_id only


# How much of a document's opening comes with each of its chunks from ``chunks_by_id``: its title and header fields
# ("INCIDENT REPORT INC-2031-017 / Service: Harbourlink telemetry / Date: 19 February 2031"), which say what every
# sentence further down is about. The reader checks a question's names, years and codes against it.
LEAD_CHARS = 300


class Catalog:
    """A thin, typed wrapper over one SQLite file. Writes happen inside ``with catalog.transaction():``."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        try:
            if readonly:
                # A read-only catalog may be shared by a server's threads; rag.api gives them one query at a time.
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            else:
                self._db = sqlite3.connect(path)
            self._db.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._db.executescript(_SCHEMA)
            self._db.execute("SELECT count(*) FROM documents").fetchone()
        except sqlite3.DatabaseError as err:
            raise IndexCorruptError(
                f"catalog {path} cannot be read ({err}); rebuild it with `rag index PATH --rebuild`"
            ) from err

    def close(self) -> None:
        self._db.close()

    def transaction(self) -> sqlite3.Connection:
        return self._db  # sqlite3's connection context manager commits on success, rolls back on error

    # --- metadata -------------------------------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )

    # --- documents ------------------------------------------------------------------------------------------
    def documents(self) -> dict[str, DocumentRecord]:
        rows = self._db.execute("SELECT id, source, hash, mtime_ns, size, principals FROM documents")
        return {r[1]: DocumentRecord(r[0], r[1], r[2], r[3], r[4], frozenset(json.loads(r[5]))) for r in rows}

    def add_document(self, source: str, hash_: str, mtime_ns: int, size: int, principals: Iterable[str]) -> int:
        cursor = self._db.execute(
            "INSERT INTO documents(source, hash, mtime_ns, size, principals) VALUES (?, ?, ?, ?, ?)",
            (source, hash_, mtime_ns, size, json.dumps(sorted(principals))),
        )
        return int(cursor.lastrowid)

    def update_stat(self, doc_id: int, mtime_ns: int, size: int) -> None:
        self._db.execute("UPDATE documents SET mtime_ns = ?, size = ? WHERE id = ?", (mtime_ns, size, doc_id))

    def set_principals(self, doc_id: int, principals: Iterable[str]) -> None:
        self._db.execute("UPDATE documents SET principals = ? WHERE id = ?", (json.dumps(sorted(principals)), doc_id))

    def delete_document(self, doc_id: int) -> list[int]:
        """Deletes the document and its chunks; returns the removed chunk ids (to remove from FAISS)."""
        ids = [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
        self._db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", [(i,) for i in ids])
        self._db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        self._db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        return ids

    # --- chunks ---------------------------------------------------------------------------------------------
    def next_chunk_id(self) -> int:
        # Ids are never reused (the high-water mark is kept in meta), so a stale FAISS id can't alias a new chunk.
        row = self._db.execute("SELECT max(id) FROM chunks").fetchone()
        return max(int(row[0] or 0), int(self.get_meta("max_chunk_id", 0))) + 1

    def add_chunks(self, doc_id: int, first_id: int, chunks: list[Chunk]) -> list[int]:
        ids = list(range(first_id, first_id + len(chunks)))
        self._db.executemany(
            'INSERT INTO chunks(id, doc_id, ord, start, "end", page, heading, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
            [(i, doc_id, n, c.start, c.end, c.page, c.heading, c.text) for n, (i, c) in enumerate(zip(ids, chunks))],
        )
        (source,) = self._db.execute("SELECT source FROM documents WHERE id = ?", (doc_id,)).fetchone()
        title = document_title(source)
        self._db.executemany(
            "INSERT INTO chunks_fts(rowid, title, heading, text) VALUES (?, ?, ?, ?)",
            [(i, title, c.heading, c.text) for i, c in zip(ids, chunks)],
        )
        if ids:
            self.set_meta("max_chunk_id", max(ids[-1], int(self.get_meta("max_chunk_id", 0))))
        return ids

    def lexical_search(
        self, query: str, limit: int, allowed: Callable[[int], bool] | None = None
    ) -> list[tuple[int, float]]:
        """The ``limit`` best chunks for ``query`` by BM25, as (chunk id, score), higher = better.

        ``allowed`` (None: everything) filters before the cut: rows are read best first and the disallowed ones
        skipped, so the list is full whenever ``limit`` allowed chunks match, even when the best matches are all
        someone else's. A query with no usable words returns [].
        """
        expression = match_expression(query)
        if not expression or limit < 1:
            return []
        rows = self._db.execute(
            f"SELECT rowid, {_BM25} AS score FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY score, rowid",
            (expression,),
        )
        found: list[tuple[int, float]] = []
        try:
            for chunk_id, score in rows:
                if allowed is None or allowed(chunk_id):
                    found.append((int(chunk_id), -float(score)))  # FTS5's bm25() is lower = better
                    if len(found) == limit:
                        break
        finally:
            rows.close()
        return found

    def chunk_ids(self) -> list[int]:
        return [r[0] for r in self._db.execute("SELECT id FROM chunks ORDER BY id")]

    def chunk_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def document_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM documents").fetchone()[0])

    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, ChunkRecord]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f'SELECT c.id, c.doc_id, d.source, c.start, c."end", c.page, c.heading, c.text, '
            f"(SELECT substr(f.text, 1, {LEAD_CHARS}) FROM chunks f WHERE f.doc_id = c.doc_id ORDER BY f.ord LIMIT 1) "
            f"FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
            ids,
        )
        return {r[0]: ChunkRecord(*r) for r in rows}

    def iter_chunks(self) -> Iterator[ChunkRecord]:
        yield from (
            ChunkRecord(*r)
            for r in self._db.execute(
                'SELECT c.id, c.doc_id, d.source, c.start, c."end", c.page, c.heading, c.text '
                "FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY c.id"
            )
        )

    def chunk_principals(self) -> list[tuple[int, frozenset[str]]]:
        """(chunk id, its document's principals) for every chunk: the input to permitted-id sets."""
        rows = self._db.execute("SELECT c.id, d.principals FROM chunks c JOIN documents d ON d.id = c.doc_id")
        cache: dict[str, frozenset[str]] = {}
        out = []
        for chunk_id, principals in rows:
            if principals not in cache:
                cache[principals] = frozenset(json.loads(principals))
            out.append((chunk_id, cache[principals]))
        return out

    def principals_of_chunk(self, chunk_id: int) -> frozenset[str]:
        row = self._db.execute(
            "SELECT d.principals FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id = ?", (chunk_id,)
        ).fetchone()
        return frozenset(json.loads(row[0])) if row else frozenset()

    def backup_to(self, path: Path) -> None:
        """A consistent copy (SQLite's online backup), the starting point of the next generation."""
        target = sqlite3.connect(path)
        with target:
            self._db.backup(target)
        target.close()
