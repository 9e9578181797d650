"""Score ``rag ask`` on a QA set exactly as users run it, and calibrate its retrieval-score threshold.

    python -m eval.ask_eval --corpus corpora/acme --qa corpora/acme-qa.jsonl --split test
    python -m eval.ask_eval --corpus corpora/acme --qa corpora/acme-qa.jsonl --calibrate   # uses split dev only
    python -m eval.ask_eval --split train --recall      # top-5 retrieval recall, hybrid vs dense (no generator)

Each question is asked as a user who may read its source (answerable) or as the broadest user (unanswerable),
so the figures measure retrieval and reading, not permissions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ingest.policy import find_policy
from rag.permissions import query_principals, readable

from .metrics import score, summarise
from .qa import QAItem, load_qa


def asking_user(policy, source: str | None) -> str | None:
    """A user who may read ``source``; for unanswerable questions the user who may read the most."""
    users = sorted({u for members in policy.groups.values() for u in members})
    if policy.is_open or not users:
        return None
    if source is None:
        return users[0] if len(users) == 1 else max(users, key=lambda u: len(query_principals(policy.groups, u)))
    if readable(policy.principals_for(source), frozenset({"*"})):
        return None
    for user in users:
        if readable(policy.principals_for(source), query_principals(policy.groups, user)):
            return user
    for principal in sorted(policy.principals_for(source)):  # a user named only in a rule
        if principal.startswith("user:"):
            return principal[5:]
    return None


def run_rag(items: list[QAItem], retriever, generator, policy, k: int | None = None, progress: bool = False):
    from rag.answer import DEFAULT_K, answer_with_details

    rows = []
    iterator = items
    if progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc="Asking", file=sys.stderr)
    for item in iterator:
        user = asking_user(policy, item.source)
        answer, read = answer_with_details(retriever, generator, item.question, user=user, k=k or DEFAULT_K)
        outcome = score(answer.answer, answer.abstained, item.answers)
        cited = [c.source for c in answer.citations]
        rows.append(
            {"item": item, "answer": answer, "outcome": outcome, "user": user, "cited": cited, "signals": read.signals}
        )
    return rows


def report(rows) -> dict:
    outcomes = [r["outcome"] for r in rows]
    summary = summarise(outcomes, samples=500)
    correct = [r for r in rows if r["outcome"].correct]
    summary["citation_rate_of_correct"] = (
        sum(r["item"].source in r["cited"] for r in correct) / len(correct) if correct else 0.0
    )
    latencies = [r["answer"].timings.get("total", 0.0) for r in rows]
    summary["latency_p50"] = statistics.median(latencies) if latencies else 0.0
    summary["latency_p95"] = float(np.percentile(latencies, 95)) if latencies else 0.0
    return summary


def calibrate(items: list[QAItem], retriever, policy, keep: float = 1.0) -> dict:
    """The largest threshold that still lets ``keep`` of answerable dev questions through to the reader, less a
    0.02 margin. The gate is for off-topic questions; plausible unanswerable ones are the reader's job."""
    from rag.answer import DEFAULT_K
    from rag.reader import select_units

    answerable, unanswerable = [], []
    for item in items:
        hits = retriever.search(item.question, k=DEFAULT_K, user=asking_user(policy, item.source))
        _, relevance = select_units(item.question, hits, retriever.embedder.embed)
        top = relevance[0] if relevance else 0.0
        (answerable if item.answerable else unanswerable).append(top)
    threshold = float(np.quantile(answerable, 1 - keep)) - 0.02 if answerable else 0.0
    return {
        "threshold": round(threshold, 3),
        "answerable_top_scores": sorted(round(s, 3) for s in answerable),
        "unanswerable_top_scores": sorted(round(s, 3) for s in unanswerable),
        "unanswerable_below": sum(s < threshold for s in unanswerable),
    }


def retrieval_recall(items: list[QAItem], retriever, policy, k: int) -> dict:
    """Of the answerable questions, the share whose gold document is among the top ``k`` results, and the share
    with a result from that document that holds an answer alias (the answer's chunk)."""
    from rag.text import contains_answer

    documents = chunks = 0
    answerable = [item for item in items if item.answerable and item.source]
    for item in answerable:
        hits = retriever.search(item.question, k=k, user=asking_user(policy, item.source))
        gold = [r for r in hits if r.source == item.source]
        documents += bool(gold)
        chunks += any(contains_answer(r.text, alias) for r in gold for alias in item.answers)
    n = max(len(answerable), 1)
    return {
        "n": len(answerable),
        f"document_recall@{k}": round(documents / n, 3),
        f"answer_chunk_recall@{k}": round(chunks / n, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("corpora/acme"))
    parser.add_argument("--qa", type=Path, default=Path("corpora/acme-qa.jsonl"))
    parser.add_argument("--split", default="test", choices=["train", "dev", "test"])
    parser.add_argument("--calibrate", action="store_true", help="Calibrate the retrieval threshold on split dev.")
    parser.add_argument("--recall", action="store_true", help="Only measure top-5 retrieval, hybrid and dense.")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--generator", default=None)
    parser.add_argument("--out", type=Path, default=None, help="Write per-question rows and the summary as JSON.")
    args = parser.parse_args(argv)

    from ingest.embedding import load_embedder
    from ingest.sync import index_folder
    from rag.generation import load_generator
    from rag.retrieval import Retriever

    policy = find_policy(args.corpus, None)
    items = [q for q in load_qa(args.qa) if q.split == ("dev" if args.calibrate else args.split)][: args.limit]
    with tempfile.TemporaryDirectory() as scratch:
        embedder = load_embedder(progress=False)
        index_folder(args.corpus, Path(scratch) / "index", embedder)
        retriever = Retriever(Path(scratch) / "index", embedder=embedder)
        if args.calibrate:
            print(json.dumps(calibrate(items, retriever, policy), indent=2))
            return 0
        if args.recall:
            index = Path(scratch) / "index"
            recall = {
                mode: retrieval_recall(items, Retriever(index, embedder=embedder, mode=mode), policy, k=5)
                for mode in ("hybrid", "dense")
            }
            print(json.dumps(recall, indent=2))
            return 0
        generator = load_generator(args.generator)
        started = time.perf_counter()
        rows = run_rag(items, retriever, generator, policy, progress=sys.stderr.isatty())
        summary = report(rows)
        summary["seconds"] = round(time.perf_counter() - started, 1)
    keys = [
        "n",
        "n_answerable",
        "answerable_accuracy",
        "false_answer_rate",
        "abstention_rate",
        "hallucination_rate",
        "citation_rate_of_correct",
        "latency_p50",
        "latency_p95",
        "seconds",
    ]
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        dump = [
            {
                "id": r["item"].id,
                "question": r["item"].question,
                "answers": r["item"].answers,
                "user": r["user"],
                "answer": r["answer"].answer,
                "abstained": r["answer"].abstained,
                "reason": r["answer"].reason,
                "correct": r["outcome"].correct,
                "cited": r["cited"],
                "source": r["item"].source,
                "signals": r["signals"],
            }
            for r in rows
        ]
        args.out.write_text(json.dumps({"summary": summary, "rows": dump}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
