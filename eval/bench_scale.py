"""Search at scale: millions of synthetic 384-d vectors in ``ivfpq`` (``ingest.ivfpq``), built without ever
holding them all in memory.

    rag bench --only search --scale 1m        # about 10 minutes on 2 shared cores
    rag bench --only search --scale 10m       # the target: 10M vectors under 8 GB of memory

The vectors are the clustered ones of ``eval.bench_filter`` (200 centres, L2-normalised), generated in shards of
100k from per-shard seeds; queries are noisy copies of vectors of the first shard. One pass generates a shard,
updates the exact top-10 of every query (unfiltered, 10% and 1% permitted, kept as running top-k so the full
matrix never exists), and adds the shard to the index, which trained on a sample of the first shard.

Reported: build time (train, add) apart from data generation, peak RSS of the process (``getrusage``: the whole
run, ground truth included), bytes on disk, and per permitted fraction (100%, 10%, 1%; plus 2% and 5% to place the
exhaustive cut-off): p50/p95 latency one query at a time on one thread, recall@10 against exact search, and
``full`` (the fraction of queries that got all 10 results). Filtered rows run twice, as ``ivf`` (the selector
inside the IVF scan, nprobe grown to nprobe/fraction) and ``exhaustive`` (every permitted vector scored on the
8-bit copy), which is how ``ingest.ivfpq.EXACT_BELOW_FRACTION`` was placed.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np

D = 384
K = 10
SHARD = 100_000
FRACTIONS = (1.0, 0.10, 0.05, 0.02, 0.01)
SCALES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}


def parse_scale(text: str) -> int:
    if text.lower() in SCALES:
        return SCALES[text.lower()]
    try:
        return int(float(text))
    except ValueError:
        raise SystemExit(f"--scale {text!r}: give a count or one of {', '.join(SCALES)}") from None


def _shard(centers: np.ndarray, start: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, start])
    x = centers[rng.integers(0, len(centers), n)]
    x += 1.5 * rng.standard_normal((n, D), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


class RunningTopK:
    """The exact top-k of every query over shards seen so far, among ids a mask permits."""

    def __init__(self, n_queries: int) -> None:
        self.scores = np.full((n_queries, K), -np.inf, dtype=np.float32)
        self.ids = np.full((n_queries, K), -1, dtype=np.int64)

    def update(self, scores: np.ndarray, ids: np.ndarray) -> None:  # scores: (queries, shard), masked to -inf
        k = min(K, scores.shape[1])
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        merged_scores = np.concatenate([self.scores, np.take_along_axis(scores, part, 1)], axis=1)
        merged_ids = np.concatenate([self.ids, ids[part]], axis=1)
        order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :K]
        self.scores = np.take_along_axis(merged_scores, order, 1)
        self.ids = np.take_along_axis(merged_ids, order, 1)


def run(n: int, n_queries: int = 100, seed: int = 0, log=print) -> dict:
    import faiss

    from ingest.vectors import VectorIndex

    faiss.omp_set_num_threads(1)  # measured: 2 OpenMP threads on 2 shared cores trained PQ ~6x slower than 1
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((200, D)).astype(np.float32)
    permitted = {f: np.random.default_rng([seed, 99]).random(n + 1) < f for f in FRACTIONS if f < 1}
    first = _shard(centers, 0, min(SHARD, n), seed)
    sources = rng.integers(0, len(first), n_queries)
    queries = first[sources] + 0.5 * rng.standard_normal((n_queries, D)).astype(np.float32) / np.sqrt(D)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    truth = {f: RunningTopK(n_queries) for f in FRACTIONS}

    index = VectorIndex.create(D, "ivfpq")
    started = time.perf_counter()
    from ingest.ivfpq import TRAIN_PER_LIST

    index.train(first[: TRAIN_PER_LIST * index.settings["nlist"]])
    index.reserve(n)
    train_s = time.perf_counter() - started
    add_s = 0.0
    for start in range(0, n, SHARD):
        x = first if start == 0 else _shard(centers, start, min(SHARD, n - start), seed)
        ids = np.arange(start + 1, start + 1 + len(x), dtype=np.int64)  # chunk ids start at 1
        scores = queries @ x.T
        for f, top in truth.items():
            top.update(scores if f == 1.0 else np.where(permitted[f][ids], scores, -np.inf), ids)
        began = time.perf_counter()
        index.add(ids, x)
        add_s += time.perf_counter() - began
        if (start // SHARD) % 10 == 9:
            log(f"  n={n}: {start + len(x):,} added ({add_s:.0f} s adding, {_rss_gb():.1f} GB peak RSS)")
    del first, x, scores
    result = {"n": n, "kind": "ivfpq", "params": index.params(), "train_s": train_s, "add_s": add_s}
    result["build_s"] = train_s + add_s
    result["peak_rss_gb"] = _rss_gb()
    with tempfile.TemporaryDirectory(prefix="rag-scale-") as tmp:
        began = time.perf_counter()
        index.save(Path(tmp) / "vectors.faiss")
        result["save_s"] = time.perf_counter() - began
        result["disk_gb"] = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e9
    log(_fmt_build(result))
    result["rows"] = _search_rows(index, queries, permitted, truth, log)
    return result


def _search_rows(index, queries, permitted, truth, log) -> list[dict]:
    rows = []
    for f in FRACTIONS:
        allowed = None if f == 1.0 else np.flatnonzero(permitted[f])
        modes = ("ivf",) if f == 1.0 else ("ivf", "exhaustive") if f <= 0.05 else ("ivf",)  # exhaustive: slow at 10%
        for mode in modes:
            index.exact_below = 1.01 if mode == "exhaustive" else 0.0
            times, found = [], []
            for q in queries:
                began = time.perf_counter()
                found.append(index.search(q, K, allowed)[0][0])
                times.append((time.perf_counter() - began) * 1e3)
            expected = truth[f].ids
            row = {
                "permitted": f,
                "mode": mode,
                "p50_ms": float(np.percentile(times, 50)),
                "p95_ms": float(np.percentile(times, 95)),
                "recall_at_10": _recall(found, expected),
                "full": float(np.mean([len(r) == K for r in found])),
            }
            rows.append(row)
            log(
                f"  permitted {f * 100:5.1f}% {mode:<10}  p50 {row['p50_ms']:7.2f} ms  p95 {row['p95_ms']:7.2f} ms  "
                f"recall@10 {row['recall_at_10']:.3f}  full {row['full'] * 100:5.1f}%"
            )
    from ingest.ivfpq import EXACT_BELOW_FRACTION

    index.exact_below = EXACT_BELOW_FRACTION
    return rows


def _recall(found: list[np.ndarray], expected: np.ndarray) -> float:
    return float(np.mean([len(set(r.tolist()) & set(t.tolist())) / K for r, t in zip(found, expected)]))


def _fmt_build(r: dict) -> str:
    return (
        f"  n={r['n']:,} ivfpq {r['params']}: built in {r['build_s']:.0f} s (train {r['train_s']:.0f} s, add "
        f"{r['add_s']:.0f} s), peak RSS {r['peak_rss_gb']:.2f} GB, {r['disk_gb']:.2f} GB on disk"
    )


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
