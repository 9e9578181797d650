"""Search benchmark through ``ingest.vectors.VectorIndex`` (our real code): flat, HNSW and IVF, with and without a
permission filter, at 10k / 100k (/ 1M) synthetic chunks (d=384, the clustered vectors of ``eval.bench_filter``).

Per kind and size: p50/p95 latency (one query at a time, k=10), recall@10 against exact search, and ``full``: the
fraction of queries that got min(k, permitted) results. Filtered rows use a random 10% and 1% permitted set. For
contrast, ``post_filter`` is the naive way (unfiltered top-20, drop unreadable hits), which comes up short.
"""

from __future__ import annotations

import time

import numpy as np

K = 10
D = 384


def run(sizes: list[int], n_queries: int = 100, hnsw_max: int = 200_000, log=print) -> list[dict]:
    from ingest.vectors import VectorIndex

    from .bench_filter import mean_recall, synthetic, timed

    out: list[dict] = []

    def measure(search, queries, truth, expected: int, **labels) -> None:
        """Time ``search`` over ``queries``; log and keep a row of ``labels``, the latency, recall@10 against
        ``truth`` and ``full`` (the share of queries that got ``expected`` results or more)."""
        found, latency = timed(search, queries)
        row = {
            **labels,
            **latency,
            "recall_at_10": mean_recall(found, truth),
            "full": float(np.mean([len(r) >= expected for r in found])),
        }
        out.append(row)
        log(_fmt(row))

    for n in sizes:
        x, queries = synthetic(n, n_queries)
        ids = np.arange(1, n + 1, dtype=np.int64)
        rng = np.random.default_rng(1)
        permitted = {f: np.sort(rng.choice(ids, int(n * f), replace=False)) for f in (0.10, 0.01)}
        indexes = {}
        for kind in ("flat", "hnsw", "ivf"):
            if kind == "hnsw" and n > hnsw_max:
                continue
            start = time.perf_counter()
            index = VectorIndex.create(D, kind)
            for i in range(0, n, 100_000):
                index.add(ids[i : i + 100_000], x[i : i + 100_000])
            indexes[kind] = index
            log(f"  n={n}: built {kind} in {time.perf_counter() - start:.1f}s")
        flat = indexes["flat"]
        truth = {None: [flat.search(q, K)[0][0] for q in queries]}
        for f, allowed in permitted.items():
            truth[f] = [flat.search(q, K, allowed)[0][0] for q in queries]
        for kind, index in indexes.items():
            for f in (None, 0.10, 0.01):
                allowed = None if f is None else permitted[f]
                expected = K if f is None else min(K, len(allowed))
                measure(
                    lambda q, a=allowed, ix=index: ix.search(q, K, a)[0][0],
                    queries,
                    truth[f],
                    expected,
                    n=n,
                    kind=kind,
                    permitted=1.0 if f is None else f,
                )
        for f, allowed in permitted.items():
            mask = np.zeros(n + 1, dtype=bool)
            mask[allowed] = True

            def post(q, mask=mask, flat=flat):
                got = flat.search(q, 2 * K)[0][0]
                return got[mask[got]][:K]

            measure(post, queries, truth[f], K, n=n, kind="post_filter(flat top-20)", permitted=f)
        del indexes, flat, x
    return out


def _fmt(row: dict) -> str:
    return (
        f"  n={row['n']:>8} {row['kind']:<25} permitted {row['permitted'] * 100:5.1f}%  p50 {row['p50_ms']:7.2f} ms "
        f"p95 {row['p95_ms']:7.2f} ms  recall@10 {row['recall_at_10']:.3f}  full {row['full'] * 100:5.1f}%"
    )
