"""What keyword search costs: BM25 pooled over the readable permission classes against FTS5's own bm25() on one
table, and the side channel of issue 16 (a word that only unreadable chunks hold must cost what an absent word costs).

    python -m eval.bench_keyword                    # 20,000 readable + 10,000 restricted chunks, 30 runs each
    python -m eval.bench_keyword --readable 2000 --restricted 1000 --runs 5 --json

The catalog is built directly (no embedder, no FAISS): every readable chunk holds 120 words drawn from 5,000, one in
four also holds "budget"; every restricted chunk holds "secretword". The query has four words, "budget" among them.
Medians of ``--runs`` lookups, the two rows of each pair timed side by side; compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ingest.catalog import Catalog
from ingest.types import Chunk

QUERY = "what is the budget for w17 and w2301 in w99"
FTS5_QUERY = '"budget" OR "w17" OR "w2301" OR "w99"'  # the same words as an FTS5 MATCH
LIMIT = 20


def build_catalog(path: Path, readable_chunks: int, restricted_chunks: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(5000)]

    def text(extra: str = "") -> str:
        return " ".join(rng.choices(vocabulary, k=120)) + extra

    catalog = Catalog(path)
    with catalog.transaction():
        for n in range(readable_chunks):
            doc_id = catalog.add_document(f"public/{n}.txt", str(n), 0, 1, ["*"])
            catalog.add_chunks(doc_id, [Chunk(0, 1, text(" budget" if n % 4 == 0 else ""))])
        for n in range(restricted_chunks):
            doc_id = catalog.add_document(f"finance/{n}.txt", str(n), 0, 1, ["group:finance"])
            catalog.add_chunks(doc_id, [Chunk(0, 1, text(" secretword"))])
    catalog.finish_writing()
    catalog.close()


def median_ms(lookup: Callable[[], object], runs: int) -> float:
    from .bench_filter import timed  # the search benchmarks' per-query timer; p50 is the median

    lookup()  # warm the page cache and the connection's scratch tables
    return timed(lambda _: lookup(), range(runs))[1]["p50_ms"]


def run(readable_chunks: int, restricted_chunks: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "catalog.sqlite"
        build_catalog(path, readable_chunks, restricted_chunks)
        catalog = Catalog(path, readonly=True)
        anonymous = lambda principals: "*" in principals  # noqa: E731
        # FTS5's bm25() on the public class's table, read straight from the file (docs/index-format.md: one
        # fts_class_<id> table per class); its column weights are the catalog's
        reference = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        (class_id,) = reference.execute("SELECT id FROM classes WHERE principals = ?", (json.dumps(["*"]),)).fetchone()
        table = f"fts_class_{int(class_id)}"
        fts5_sql = (
            f"SELECT rowid, -bm25({table}, 0.5, 1.0, 1.0) AS score FROM {table} WHERE {table} MATCH ? "
            "ORDER BY score DESC, rowid LIMIT ?"
        )

        def fts5() -> list[tuple[int, float]]:
            return reference.execute(fts5_sql, (FTS5_QUERY, LIMIT)).fetchall()

        def pooled() -> list[tuple[int, float]]:
            return catalog.lexical_search(QUERY, LIMIT, readable=anonymous)

        same_ranking = [i for i, _ in fts5()] == [i for i, _ in pooled()]
        fts5_ms, pooled_ms = median_ms(fts5, runs), median_ms(pooled, runs)
        held_ms = median_ms(lambda: catalog.lexical_search("secretword", LIMIT, readable=anonymous), runs)
        absent_ms = median_ms(lambda: catalog.lexical_search("zzzabsentword", LIMIT, readable=anonymous), runs)
        reference.close()
        catalog.close()
    return {
        "readable_chunks": readable_chunks,
        "restricted_chunks": restricted_chunks,
        "runs": runs,
        "pooled_ranking_equals_fts5": same_ranking,
        "fts5_bm25_ms": round(fts5_ms, 3),
        "pooled_bm25_ms": round(pooled_ms, 3),
        "pooled_over_fts5": round(pooled_ms / fts5_ms, 2),
        "word_only_restricted_chunks_hold_ms": round(held_ms, 3),
        "absent_word_ms": round(absent_ms, 3),
        "side_channel_ratio": round(held_ms / absent_ms, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_keyword", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readable", type=int, default=20_000, help="chunks everyone may read (default 20,000)")
    parser.add_argument("--restricted", type=int, default=10_000, help="chunks only finance may read (10,000)")
    parser.add_argument("--runs", type=int, default=30, help="lookups per median (default 30)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if min(args.readable, args.restricted, args.runs) < 1:
        parser.error("--readable, --restricted and --runs must each be 1 or more")
    figures = run(args.readable, args.restricted, args.runs)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        width = max(map(len, figures))
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
