"""The single writer's own rates, measured apart from parsing and embedding (for ``docs/scaling.md``).

    python -m eval.bench_writer [--chunks 50000] [--out writer.json]

Whatever engine parses and embeds, the driver alone writes: catalog rows (SQLite, with the full-text index) and
FAISS vectors, then saves both into the next generation. This times each on synthetic chunks of the bundled
corpus's size (~800 characters, 10 chunks a document) and 384-d vectors:

- ``catalog``      ``add_document`` + ``add_chunks`` for every document, one transaction, committed
- ``flat_add``     ``VectorIndex`` flat ``add`` in batches of 256 (as ``ingest.sync`` adds)
- ``ivfpq_add``    the same into a trained ``ivfpq`` (assignment to 1024 lists, PQ and 8-bit encoding)
- ``*_save``       ``save`` of each index (write + fsync happen in the commit)
- ``catalog_copy`` ``backup_to``: the copy every incremental run makes of the live catalog

One thread for FAISS, as a driver on a busy node would get. Rates are chunks (or vectors) per second of wall time
and per second of this process's CPU time (``cpu``): on a shared machine the second is the one to project from.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

D = 384
WORDS = "tide gauge harbour survey revenue quarter ferry schedule policy budget vessel crane berth cargo".split()


def _chunks(n: int, rng: np.random.Generator):
    from ingest.types import Chunk

    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, 130))
        out.append(Chunk(i * 800, i * 800 + len(text), text, None, "Section"))
    return out


def run(n: int = 50_000, log=print) -> dict:
    import faiss

    from ingest.catalog import Catalog
    from ingest.vectors import VectorIndex

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    chunks = _chunks(n, rng)
    vectors = rng.standard_normal((n, D)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1, n + 1, dtype=np.int64)
    rates: dict[str, float] = {}
    cpu_rates: dict[str, float] = {}

    class timed:
        def __init__(self, name: str) -> None:
            self.name = name

        def __enter__(self):
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def __exit__(self, *exc):
            rates[self.name] = n / (time.perf_counter() - self.wall)
            cpu_rates[self.name] = n / max(1e-9, time.process_time() - self.cpu)

    with tempfile.TemporaryDirectory(prefix="rag-writer-") as tmp:
        catalog = Catalog(Path(tmp) / "catalog.sqlite")
        with timed("catalog"), catalog.transaction():
            for doc in range(0, n, 10):
                doc_id = catalog.add_document(f"folder/doc-{doc}.md", f"{doc:064x}", 0, 8000, ["*"])
                catalog.add_chunks(doc_id, doc + 1, chunks[doc : doc + 10])
        with timed("catalog_copy"):
            catalog.backup_to(Path(tmp) / "copy.sqlite")
        catalog.close()

        for kind in ("flat", "ivfpq"):
            index = VectorIndex.create(D, kind)
            if kind == "ivfpq":
                index.train(vectors[: 64 * index.settings["nlist"]])
            with timed(f"{kind}_add"):
                for start in range(0, n, 256):
                    index.add(ids[start : start + 256], vectors[start : start + 256])
            with timed(f"{kind}_save"):
                index.save(Path(tmp) / f"{kind}.faiss")
    for name, rate in rates.items():
        log(f"  {name:<13} {rate:12,.0f} chunks/s wall  {cpu_rates[name]:12,.0f} chunks/s of CPU")
    return {"chunks": n, "rates_per_s": rates, "rates_per_cpu_s": cpu_rates}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_writer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args.chunks)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
