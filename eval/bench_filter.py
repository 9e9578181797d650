"""Benchmark: permission-filtered vector search (kept out of the tests).

    python -m eval.bench_filter [--sizes 10000 100000] [--million] [--queries 100] [--out bench_filter.json]

Synthetic clustered, L2-normalised vectors (d=384, 200 clusters; queries are noisy copies of corpus vectors), a
uniformly random permitted subset of 1%, 10% and 50% of the chunks, k=10, one query at a time (as `rag search`
runs, FAISS on one thread). Variants, each with p50/p95 latency in milliseconds:

- ``unfiltered``     flat exact search over everything (the no-policy case; a lower bound, not permission-safe)
- ``filtered``       ours: flat exact search with the permitted set inside FAISS (IDSelectorBitmap)
- ``filtered_batch`` the same with an IDSelectorBatch (hash set), to pick the selector
- ``post_20/100``    unfiltered top-fetch_k, then drop unreadable hits: ``missing`` = mean results short of
                     min(k, permitted)
- ``hnsw``           HNSW (M=32, efSearch=128) under the selector, no fallback: ``recall`` vs exact, ``missing``
- ``hnsw_exact``     the exact fallback forced (filtered brute force over HNSW's flat storage)
- ``hnsw_auto``      what ``VectorIndex.search`` does: exact below the cut-off, HNSW above it (plus an exact
                     redo of any query that HNSW leaves short)

HNSW rows also run at 2% and 5% to place the fallback cut-off (``ingest.vector_kinds.EXACT_FALLBACK_FRACTION``).
Latencies include building the selector from the sorted permitted ids, as a cache miss would not but every
search does. The CPU is shared and noisy; compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one query at a time, one thread
    os.environ.setdefault(_var, "1")
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

D = 384
K = 10
FRACTIONS = (0.01, 0.10, 0.50)
HNSW_FRACTIONS = (0.01, 0.02, 0.05, 0.10, 0.20, 0.50)


def synthetic(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((200, D)).astype(np.float32)
    x = centers[rng.integers(0, 200, n)] + 1.5 * rng.standard_normal((n, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, n, n_queries)] + 0.5 * rng.standard_normal((n_queries, D)).astype(np.float32) / np.sqrt(D)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q.astype(np.float32)


def timed(fn, queries):
    """``fn`` run on each query, one at a time: its results, and their p50/p95 latency in milliseconds."""
    times, rows = [], []
    for q in queries:
        start = time.perf_counter()
        rows.append(fn(q))
        times.append((time.perf_counter() - start) * 1e3)
    return rows, {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def _missing(rows, expected: int) -> float:
    return float(np.mean([expected - len(r) for r in rows]))


def mean_recall(rows, truth) -> float:
    """The mean over queries of the share of the true top hits (``truth``) that the query's row holds."""
    hits = [len(set(r.tolist()) & set(t.tolist())) / max(1, len(t)) for r, t in zip(rows, truth)]
    return float(np.mean(hits))


def run_size(n: int, n_queries: int, hnsw: bool = True) -> list[dict]:
    import faiss

    from ingest.vector_kinds import EXACT_FALLBACK_FRACTION, EXACT_FALLBACK_MIN_IDS
    from ingest.vectors import VectorIndex

    x, queries = synthetic(n, n_queries)
    ids = np.arange(1, n + 1, dtype=np.int64)
    flat = VectorIndex.create(D, "flat")
    flat.add(ids, x)
    rows: list[dict] = []

    def record(variant, fraction, stats, **extra):
        row = {"n": n, "fraction": fraction, "variant": variant, **stats, **extra}
        rows.append(row)
        print(_fmt(row), flush=True)

    _, stats = timed(lambda q: flat.search(q, K)[0][0], queries)
    record("unfiltered", 1.0, stats)

    hnsw_index = None
    if hnsw:
        start = time.perf_counter()
        hnsw_index = VectorIndex.create(D, "hnsw")
        hnsw_index.add(ids, x)
        print(f"# n={n}: hnsw built in {time.perf_counter() - start:.1f}s", flush=True)
        exact = [flat.search(q, K)[0][0] for q in queries]
        found, stats = timed(lambda q: hnsw_index.search(q, K)[0][0], queries)
        record("hnsw", 1.0, stats, missing=_missing(found, K), recall=mean_recall(found, exact))

    rng = np.random.default_rng(1)
    for fraction in sorted(set(FRACTIONS) | set(HNSW_FRACTIONS if hnsw else ())):
        allowed = np.sort(rng.choice(ids, int(n * fraction), replace=False))
        expected = min(K, len(allowed))
        truth, stats = timed(lambda q, a=allowed: flat.search(q, K, a)[0][0], queries)  # exact: the ground truth
        if fraction in FRACTIONS:
            record("filtered", fraction, stats, missing=_missing(truth, expected), recall=1.0)

            def batch_search(q, allowed=allowed):
                sel = faiss.IDSelectorBatch(allowed)
                _, found = flat._index.search(q[None, :], K, params=faiss.SearchParameters(sel=sel))
                return found[0][found[0] >= 0]

            found, stats = timed(batch_search, queries)
            record(
                "filtered_batch", fraction, stats, missing=_missing(found, expected), recall=mean_recall(found, truth)
            )
            permitted = np.zeros(n + 1, dtype=bool)
            permitted[allowed] = True
            for fetch_k in (20, 100):

                def post(q, fetch_k=fetch_k, permitted=permitted):
                    got = flat.search(q, fetch_k)[0][0]
                    return got[permitted[got]][:K]

                found, stats = timed(post, queries)
                record(
                    f"post_{fetch_k}",
                    fraction,
                    stats,
                    missing=_missing(found, expected),
                    recall=mean_recall(found, truth),
                )
        if hnsw_index is not None:
            for variant, on, cutoff in (("hnsw", False, 0.0), ("hnsw_exact", True, 1.01), ("hnsw_auto", True, None)):
                hnsw_index.exact_fallback = on
                hnsw_index.fallback_fraction = EXACT_FALLBACK_FRACTION if cutoff is None else cutoff
                hnsw_index.fallback_min_ids = EXACT_FALLBACK_MIN_IDS if cutoff is None else 0
                found, stats = timed(lambda q, a=allowed: hnsw_index.search(q, K, a)[0][0], queries)
                record(variant, fraction, stats, missing=_missing(found, expected), recall=mean_recall(found, truth))
    return rows


def _fmt(row: dict) -> str:
    extra = ""
    if "missing" in row:
        extra = f"  missing {row['missing']:5.2f}  recall {row['recall']:.3f}"
    return (
        f"n={row['n']:>7}  permitted {row['fraction'] * 100:5.1f}%  {row['variant']:<15}"
        f"  p50 {row['p50_ms']:7.2f} ms  p95 {row['p95_ms']:7.2f} ms{extra}"
    )


def table(rows: list[dict]) -> str:
    lines = [
        "| n | permitted | variant | p50 ms | p95 ms | missing of k | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        missing = f"{r['missing']:.2f}" if "missing" in r else "-"
        recall = f"{r['recall']:.3f}" if "recall" in r else "-"
        lines.append(
            f"| {r['n']} | {r['fraction'] * 100:g}% | {r['variant']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
            f"| {missing} | {recall} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_filter", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--million", action="store_true", help="also run 1M chunks (slow; no HNSW)")
    parser.add_argument("--queries", type=int, default=100, help="queries per variant (default 100)")
    parser.add_argument("--no-hnsw", action="store_true", help="skip the HNSW rows (building it is the slow part)")
    parser.add_argument("--threads", type=int, default=1, help="FAISS threads (default 1: one query at a time)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    sizes = list(args.sizes) + ([1_000_000] if args.million else [])
    rows: list[dict] = []
    for n in sizes:
        rows += run_size(n, args.queries, hnsw=not args.no_hnsw and n <= 200_000)
    print()
    print(table(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"d": D, "k": K, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
