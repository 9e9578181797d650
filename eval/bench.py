"""The whole benchmark table in one command: ingest (ours vs LangChain vs LlamaIndex), embedding roofline, search
and generation. Prints a table per section and writes every figure as JSON.

    python -m eval.bench                    # everything (about 15-25 min on 2 cores)
    python -m eval.bench --quick            # a smoke-sized run of every section (a few minutes)
    python -m eval.bench --only ingest search --out bench.json
    python -m eval.bench --only search --scale 10m   # 10M vectors in ivfpq (eval.bench_scale)

Ingest corpora: the bundled demo corpus, a generated corpus of 2,000 documents (``eval.corpus_gen``, seed 0,
about 2 MB), and the SQuAD sample (one text file per article, as ``rag eval`` writes it). Each system runs in its
own process (``eval.bench_ingest``) so its peak memory is its own; the peers need the ``bench`` extra
(``pip install -e ".[bench]"``) and show as "not installed" rows otherwise. The machine is shared and noisy, so
compare ratios within one run, never absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECTIONS = ("ingest", "roofline", "search", "gen")
PEERS = ("langchain", "llamaindex")
DEFAULT_SQUAD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad2" / "dev-2articles.json"


# --- ingest ------------------------------------------------------------------------------------------------------


def _ingest_corpora(scratch: Path, squad: Path | None, quick: bool, n_docs: int | None = None) -> dict[str, Path]:
    from corpora import bundled_corpus

    from .corpus_gen import generate
    from .qa import squad_to_corpus

    # Copies: the ingest worker edits one file in place to time a one-change re-index.
    corpora = {"demo": Path(shutil.copytree(bundled_corpus(), scratch / "demo"))}
    generated = scratch / "generated"
    n_docs = n_docs or (200 if quick else 2000)
    generate(generated, n_docs=n_docs)
    corpora[f"generated-{n_docs}"] = generated
    if squad and squad.is_file():
        corpora["squad"] = squad_to_corpus(squad, scratch / "squad")
    return corpora


def _ingest_one(system: str, corpus: Path, scratch: Path) -> dict:
    out = scratch / f"ingest-{system}-{corpus.name}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "eval.bench_ingest", "--system", system, "--corpus", str(corpus), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    if not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"system": system, "error": f"exit {proc.returncode}: {tail[0][:200]}"}
    return json.loads(out.read_text())


def run_ingest(
    scratch: Path, squad: Path | None, quick: bool, peers: bool, log=print, ray: bool = False, n_docs: int | None = None
) -> list[dict]:
    from .bench_ingest import corpus_tokens

    rows: list[dict] = []
    for name, folder in _ingest_corpora(scratch, squad, quick, n_docs).items():
        tokens = corpus_tokens(folder)
        # ours_torch: the embedder's torch path beside the default (OpenVINO on a CPU), in the same run
        results = {system: _ingest_one(system, folder, scratch) for system in ("ours", "ours_torch")}
        for engine in ("ours_ray1", "ours_ray2") if ray else ():
            results[engine] = _ingest_one(engine, folder, scratch)
        for peer in PEERS if peers else ():
            results[peer] = _ingest_one(peer, folder, scratch)
        ours_rate = results["ours"].get("chunks", 0) / results["ours"]["seconds"] if "seconds" in results["ours"] else 0
        for system, result in results.items():
            row = {"corpus": name, "tokens": tokens, **result, "system": system}
            if "seconds" in result and result["seconds"] > 0:
                row["docs_per_s"] = result["documents"] / result["seconds"]
                row["chunks_per_s"] = result["chunks"] / result["seconds"]
                row["tokens_per_s"] = tokens / result["seconds"]
                if system.startswith("ours_ray"):
                    row["ray_over_local"] = row["chunks_per_s"] / ours_rate if ours_rate else None
                elif system != "ours":
                    row["ours_over_peer"] = ours_rate / row["chunks_per_s"] if row["chunks_per_s"] else None
            rows.append(row)
            log(_fmt_ingest(row))
    return rows


def _fmt_ingest(row: dict) -> str:
    head = f"  {row['corpus']:<15} {row['system']:<11}"
    if "error" in row:
        return f"{head} {row['error']}"
    text = (
        f"{head} {row['documents']:>5} docs {row['chunks']:>6} chunks {row['seconds']:7.1f} s  "
        f"{row['docs_per_s']:7.1f} docs/s {row['chunks_per_s']:6.1f} chunks/s {row['tokens_per_s']:7.0f} tok/s  "
        f"peak {row['peak_rss_mb']:5.0f} MB"
    )
    if row.get("ray_over_local"):
        text += f"  ray/local {row['ray_over_local']:.2f}x"
    if row.get("ours_over_peer"):
        text += f"  ours/peer {row['ours_over_peer']:.2f}x"
    if "noop_reindex_s" in row:
        changed = row.get("changed_reindex_s", float("nan"))
        text += f"  re-index: no-op {row['noop_reindex_s']:.2f} s, one file changed {changed:.2f} s"
    return text


# --- the table ---------------------------------------------------------------------------------------------------


def _machine() -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--quick", action="store_true", help="smaller corpora and fewer repeats (a smoke run)")
    parser.add_argument("--no-peers", action="store_true", help="skip LangChain and LlamaIndex in the ingest rows")
    parser.add_argument("--ray", action="store_true", help="ingest: also --engine ray with 1 and 2 embedder actors")
    parser.add_argument("--docs", type=int, default=None, help="ingest: documents in the generated corpus")
    parser.add_argument("--million", action="store_true", help="also search 1M chunks (flat and IVF; slow)")
    parser.add_argument(
        "--scale",
        default=None,
        help="search section: instead of the 10k/100k rows, N synthetic vectors in ivfpq (100k, 1m, 10m or a count)",
    )
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD, help="SQuAD 2.0 JSON (ingest corpus, roofline)")
    parser.add_argument("--cold", action="store_true", help="also time a cold model load (GGUF conversion, ~80 s)")
    parser.add_argument("--out", type=Path, default=Path("bench.json"), help="JSON output (default bench.json)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    squad = args.squad if args.squad and args.squad.is_file() else None
    if squad is None:
        print(f"note: SQuAD file {args.squad} not found; its ingest row and the roofline are skipped", file=sys.stderr)

    result: dict = {"machine": _machine(), "quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        scratch = Path(tmp)
        if "ingest" in args.only:
            print("== ingest (cold index; ours/peer = chunks/s ratio, same splitter budget and embedder)")
            result["ingest"] = run_ingest(scratch, squad, args.quick, not args.no_peers, ray=args.ray, n_docs=args.docs)
        if "roofline" in args.only and squad:
            from .bench_roofline import run as run_roofline

            print("== embedding roofline")
            result["roofline"] = run_roofline(squad, quick=args.quick)
        if "search" in args.only and args.scale:
            from .bench_scale import parse_scale
            from .bench_scale import run as run_scale

            n = parse_scale(args.scale)
            print(f"== search at scale ({n:,} vectors, ivfpq, k=10, one query at a time)")
            result["search_scale"] = run_scale(n, n_queries=30 if args.quick else 100)
        elif "search" in args.only:
            from .bench_search import run as run_search

            print("== search (k=10, one query at a time)")
            sizes = [10_000] if args.quick else [10_000, 100_000] + ([1_000_000] if args.million else [])
            result["search"] = run_search(sizes, n_queries=30 if args.quick else 100)
        if "gen" in args.only:
            from corpora import bundled_corpus

            from .bench_gen import run as run_gen

            print("== generation (default model)")
            corpus = bundled_corpus()
            result["generation"] = run_gen(corpus, corpus.parent / "acme-qa.jsonl", quick=args.quick, cold=args.cold)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
