"""The catalog: an SQLite file holding documents, chunks, their keyword index and the index's metadata.

It is the source of truth for permissions (each document's principals) and for chunk text and offsets; the FAISS
file beside it holds only vectors keyed by chunk id. ``store.py`` keeps the two in step.

The keyword index for the BM25 half of hybrid search is one FTS5 table per permission class (``fts_class_N``,
rowid = chunk id), a class being one distinct set of principals. A query reads only the tables of the classes the
user may read, so BM25's statistics (document counts, lengths, word frequencies) and the time a lookup takes never
depend on documents the user may not read. Those statistics are pooled over the readable classes, as if they were one
table (``lexical_search``): ranking each class alone and merging by score compares scores from collections of
different sizes, which cost hybrid search its whole gain over dense (docs/benchmarks.md#retrieval). The tables are
written and deleted explicitly next to ``chunks`` rather than by triggers, so that all the bookkeeping of a chunk's
rows is in one place.

Chunk ids are derived from (source, content hash, position) rather than counted, so an id says nothing about how
many other chunks (readable or not) were indexed before it, and the same text keeps its id across rebuilds.
Writers run with ``secure_delete`` and merge the keyword tables they deleted from (``finish_writing``), so deleted
text does not linger in the file's free pages or in old FTS segments.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import IndexCorruptError
from .types import Chunk

# 2: adds chunks_fts. 3: keyword tables per permission class, chunk ids from content. An index of an older format
# is refused with "rebuild it" (see store.open_index).
FORMAT_VERSION = 3
_ID_BITS = 53  # chunk ids stay exact in JavaScript's numbers (the web page reads them from JSON)

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
CREATE TABLE IF NOT EXISTS classes (
    id INTEGER PRIMARY KEY,             -- the keyword table of this class is fts_class_<id>
    principals TEXT NOT NULL UNIQUE     -- the same JSON as documents.principals
);
"""
_TOKENIZER = "tokenize='porter unicode61 remove_diacritics 2'"
_FTS_COLUMNS = f"title, heading, text, {_TOKENIZER}"
# BM25 column weights: a file name is a short, strong hint, but a word there is shared by every chunk of the
# document, so it counts half of one in the chunk's own text.
_COLUMN_WEIGHTS = {"title": 0.5, "heading": 1.0, "text": 1.0}
_WEIGHT_OF_COLUMN = "CASE col " + " ".join(f"WHEN '{c}' THEN {w}" for c, w in _COLUMN_WEIGHTS.items()) + " END"
# FTS5's own bm25() constants, so that one readable class ranks exactly as FTS5 would rank it.
_BM25_K1 = 1.2
_BM25_B = 0.75
_MIN_IDF = 1e-6  # FTS5's floor for a word in more than half of the rows: it still counts, a little
# Words too common to rank by, question words included: most queries are questions.
_STOPWORDS = frozenset(
    "a an and are as at be by can did do does for from had has have how i in is it its of on or our that the "
    "their there this to was we were what when where which who whom why will with you your".split()
)
_MAX_TERMS = 64  # a pasted paragraph stays a cheap query
_TOKEN = re.compile(r"[^\W_]+")  # runs of letters and digits: what unicode61 keeps as token characters
_SQL_BATCH = 500  # ids per IN (...) list, well under SQLite's limit on bound parameters


def document_title(source: str) -> str:
    """A document's name as words ("travel-policy_2031.md" -> "travel policy 2031"): embedded and keyword-indexed
    with each of its chunks as context."""
    return Path(source).stem.replace("_", " ").replace("-", " ")


def query_words(query: str) -> list[str]:
    """The words of free text that keyword search looks for: lower-cased runs of letters and digits, each once, without
    stopwords and one-letter words, at most ``_MAX_TERMS``.

    A word is only ever letters and digits, so FTS5 syntax in user input (quotes, ``*``, ``:``, ``NEAR(``,
    ``AND``/``NOT``, parentheses, ``^``) can neither break the search nor change what it matches.
    """
    words: list[str] = []
    for token in (t.lower() for t in _TOKEN.findall(query)):  # split first: "İ".lower() adds a combining mark
        if len(token) > 1 and token not in _STOPWORDS and token not in words:
            words.append(token)
    return words[:_MAX_TERMS]


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
                # Autocommit: keyword search writes scratch rows to the temporary schema, and an implicit transaction
                # left open would hold a read lock on the file between queries.
                self._db = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
                )
            else:
                self._db = sqlite3.connect(path)
            self._db.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._db.execute("PRAGMA secure_delete = ON")  # deleted text is zeroed, not left in free pages
                self._db.executescript(_SCHEMA)
            self._db.execute("SELECT count(*) FROM documents").fetchone()
        except sqlite3.DatabaseError as err:
            raise IndexCorruptError(
                f"catalog {path} cannot be read ({err}); rebuild it with `rag index PATH --rebuild`"
            ) from err
        self._merged: set[str] = set()  # keyword tables deleted from, to merge before the file is final

    def close(self) -> None:
        self._db.close()

    def transaction(self) -> sqlite3.Connection:
        return self._db  # sqlite3's connection context manager commits on success, rolls back on error

    def finish_writing(self, vacuum: bool = False) -> None:
        """Commit, then merge the keyword tables that lost rows (FTS5 keeps deleted words in old segments until a
        merge) and, with ``vacuum``, rewrite the whole file so that no free page is left."""
        self._db.commit()
        existing = self._class_tables()
        for table in sorted(self._merged & existing):
            self._db.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")
        self._db.commit()
        if vacuum:
            self._db.execute("VACUUM")

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
        """New readers for a document: its keyword rows move to the new class's table (nothing is re-embedded)."""
        old = self._principals_json(doc_id)
        new = json.dumps(sorted(principals))
        if new == old:
            return
        rows = self._db.execute("SELECT id, heading, text FROM chunks WHERE doc_id = ? ORDER BY ord", (doc_id,))
        rows = rows.fetchall()
        self._delete_keywords(old, [r[0] for r in rows])
        self._db.execute("UPDATE documents SET principals = ? WHERE id = ?", (new, doc_id))
        self._drop_unused_class(old)
        self._insert_keywords(doc_id, new, rows)

    def delete_document(self, doc_id: int) -> list[int]:
        """Deletes the document and its chunks; returns the removed chunk ids (to remove from FAISS)."""
        principals = self._principals_json(doc_id)
        ids = [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
        self._delete_keywords(principals, ids)
        self._db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        self._db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        self._drop_unused_class(principals)
        return ids

    # --- chunks ---------------------------------------------------------------------------------------------
    def add_chunks(self, doc_id: int, chunks: list[Chunk]) -> list[int]:
        """Store a document's chunks and their keyword rows; returns their ids (for FAISS), in order."""
        source, digest = self._db.execute("SELECT source, hash FROM documents WHERE id = ?", (doc_id,)).fetchone()
        ids = [self._new_chunk_id(source, digest, n) for n in range(len(chunks))]
        self._db.executemany(
            'INSERT INTO chunks(id, doc_id, ord, start, "end", page, heading, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
            [(i, doc_id, n, c.start, c.end, c.page, c.heading, c.text) for n, (i, c) in enumerate(zip(ids, chunks))],
        )
        rows = [(i, c.heading, c.text) for i, c in zip(ids, chunks)]
        self._insert_keywords(doc_id, self._principals_json(doc_id), rows)
        return ids

    def lexical_search(
        self, query: str, limit: int, readable: Callable[[frozenset[str]], bool] | None = None
    ) -> list[tuple[int, float]]:
        """The ``limit`` best chunks for ``query`` by BM25, as (chunk id, score), higher = better; ties by chunk id.

        ``readable`` (None: everything) says which permission classes (principal sets) to search; the others' tables
        are never touched, so neither the scores, nor the order, nor the time taken depends on them. The readable
        classes are scored as one collection: row counts, token totals and each word's document frequency are summed
        over them, and the formula is FTS5's bm25() with the column weights above (a word's occurrences count once
        per word, however many of the query's words stem to it). A query with no usable words returns [].
        """
        terms = self._query_terms(query)
        if not terms or limit < 1:
            return []
        rows = tokens = 0
        documents_with: dict[str, int] = dict.fromkeys(terms, 0)
        frequency: dict[int, dict[str, float]] = {}  # chunk id -> query term -> weighted occurrences
        length: dict[int, int] = {}  # chunk id -> tokens in its three columns
        marks = ",".join("?" * len(terms))
        for class_id, principals in self._db.execute("SELECT id, principals FROM classes").fetchall():
            if readable is not None and not readable(frozenset(json.loads(principals))):
                continue
            table = _class_table(class_id)
            row_vocabulary, instance_vocabulary = self._vocabularies(table)
            class_rows, class_tokens = self._class_totals(table)
            rows, tokens = rows + class_rows, tokens + class_tokens
            for term, count in self._db.execute(
                f"SELECT term, doc FROM {row_vocabulary} WHERE term IN ({marks})", terms
            ):
                documents_with[term] += count
            found: set[int] = set()
            for term in terms:
                for chunk_id, weighted in self._db.execute(
                    f"SELECT doc, sum({_WEIGHT_OF_COLUMN}) FROM {instance_vocabulary} WHERE term = ? GROUP BY doc",
                    (term,),
                ):
                    frequency.setdefault(chunk_id, {})[term] = weighted
                    found.add(chunk_id)
            length.update(self._row_lengths(table, found))
        if not frequency:
            return []
        average_length = tokens / rows
        idf = {
            term: max(math.log((rows - hits + 0.5) / (hits + 0.5)), _MIN_IDF) for term, hits in documents_with.items()
        }
        scored = []
        for chunk_id, counts in frequency.items():
            norm = _BM25_K1 * (1 - _BM25_B + _BM25_B * length[chunk_id] / average_length)
            score = sum(idf[t] * f * (_BM25_K1 + 1) / (f + norm) for t, f in counts.items())
            scored.append((chunk_id, score))
        scored.sort(key=lambda hit: (-hit[1], hit[0]))
        return scored[:limit]

    def _query_terms(self, query: str) -> list[str]:
        """The distinct index terms of the query's words: FTS5's own tokenizer (stemming included) on each word, via
        a scratch table in this connection's temporary schema, so the query is read exactly as the chunks were."""
        words = query_words(query)
        if not words:
            return []
        self._db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_words USING fts5(words, {_TOKENIZER})")
        self._db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_terms USING fts5vocab(temp, query_words, row)")
        self._db.execute("INSERT INTO temp.query_words(words) VALUES (?)", (" ".join(words),))
        terms = [term for (term,) in self._db.execute("SELECT term FROM temp.query_terms ORDER BY term")]
        self._db.execute("DELETE FROM temp.query_words")
        return terms

    def _vocabularies(self, table: str) -> tuple[str, str]:
        """fts5vocab views of a class's keyword table, in the temporary schema (so a read-only catalog can have
        them): per term, the rows holding it (``row``) and each occurrence's row and column (``instance``)."""
        row_vocabulary, instance_vocabulary = f"temp.{table}_rows", f"temp.{table}_instances"
        self._db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {row_vocabulary} USING fts5vocab(main, {table}, row)")
        self._db.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {instance_vocabulary} USING fts5vocab(main, {table}, instance)"
        )
        return row_vocabulary, instance_vocabulary

    def _class_totals(self, table: str) -> tuple[int, int]:
        """(rows, tokens over all columns) of a keyword table, from FTS5's averages record: the numbers its bm25()
        reads. The record (rowid 1 of ``<table>_data``) is varints, rows first, then each column's token total."""
        row = self._db.execute(f"SELECT block FROM {table}_data WHERE id = 1").fetchone()
        values = _varints(row[0]) if row else [0]
        return values[0], sum(values[1:])

    def _row_lengths(self, table: str, chunk_ids: set[int]) -> dict[int, int]:
        """Tokens per row over all columns, from FTS5's docsize table (one varint per column per row)."""
        lengths: dict[int, int] = {}
        ordered = sorted(chunk_ids)
        for start in range(0, len(ordered), _SQL_BATCH):
            batch = ordered[start : start + _SQL_BATCH]
            rows = self._db.execute(
                f"SELECT id, sz FROM {table}_docsize WHERE id IN ({','.join('?' * len(batch))})", batch
            )
            lengths.update((chunk_id, sum(_varints(sizes))) for chunk_id, sizes in rows)
        return lengths

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

    def keyword_row_count(self) -> int:
        """Rows in all keyword tables together (one per chunk when consistent)."""
        return sum(int(self._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in self._class_tables())

    # --- permission classes and their keyword tables ----------------------------------------------------------
    def _principals_json(self, doc_id: int) -> str:
        return self._db.execute("SELECT principals FROM documents WHERE id = ?", (doc_id,)).fetchone()[0]

    def _insert_keywords(self, doc_id: int, principals: str, rows: list[tuple[int, str, str]]) -> None:
        if not rows:
            return
        (source,) = self._db.execute("SELECT source FROM documents WHERE id = ?", (doc_id,)).fetchone()
        title = document_title(source)
        self._db.execute("INSERT OR IGNORE INTO classes(principals) VALUES (?)", (principals,))
        (class_id,) = self._db.execute("SELECT id FROM classes WHERE principals = ?", (principals,)).fetchone()
        table = _class_table(class_id)
        self._db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5({_FTS_COLUMNS})")
        self._db.executemany(
            f"INSERT INTO {table}(rowid, title, heading, text) VALUES (?, ?, ?, ?)",
            [(i, title, heading, text) for i, heading, text in rows],
        )

    def _delete_keywords(self, principals: str, ids: list[int]) -> None:
        row = self._db.execute("SELECT id FROM classes WHERE principals = ?", (principals,)).fetchone()
        if row is None or not ids:
            return
        table = _class_table(row[0])
        self._db.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(i,) for i in ids])
        self._merged.add(table)

    def _drop_unused_class(self, principals: str) -> None:
        """A class no document has any more loses its table: its words go with it."""
        if self._db.execute("SELECT 1 FROM documents WHERE principals = ? LIMIT 1", (principals,)).fetchone():
            return
        row = self._db.execute("SELECT id FROM classes WHERE principals = ?", (principals,)).fetchone()
        if row is not None:
            self._db.execute(f"DROP TABLE IF EXISTS {_class_table(row[0])}")
            self._db.execute("DELETE FROM classes WHERE id = ?", (row[0],))

    def _class_tables(self) -> set[str]:
        rows = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'fts_class_*'")
        return {name for (name,) in rows if re.fullmatch(r"fts_class_\d+", name)}

    def _new_chunk_id(self, source: str, digest: str, position: int) -> int:
        """A positive id from the chunk's identity; on the rare collision, the next candidate of the same sequence."""
        for attempt in itertools.count():
            key = f"{attempt}\0{source}\0{digest}\0{position}".encode("utf-8", "surrogateescape")
            candidate = (
                int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % ((1 << _ID_BITS) - 1) + 1
            )
            if not self._db.execute("SELECT 1 FROM chunks WHERE id = ?", (candidate,)).fetchone():
                return candidate
        return 0  # unreachable: count() never ends

    def backup_to(self, path: Path) -> None:
        """A consistent copy (SQLite's online backup), the starting point of the next generation."""
        target = sqlite3.connect(path)
        with target:
            self._db.backup(target)
        target.close()


def _class_table(class_id: int) -> str:
    return f"fts_class_{int(class_id)}"  # an integer from our own table: safe to place in SQL


def _varints(blob: bytes) -> list[int]:
    """SQLite's variable-length integers, as FTS5 stores its sizes: big-endian groups of 7 bits, the high bit set on
    every byte but the last, and a ninth byte (if reached) giving 8 bits."""
    values, value, used = [], 0, 0
    for byte in blob:
        used += 1
        if used == 9:
            values.append((value << 8) | byte)
            value, used = 0, 0
        elif byte & 0x80:
            value = (value << 7) | (byte & 0x7F)
        else:
            values.append((value << 7) | byte)
            value, used = 0, 0
    return values
