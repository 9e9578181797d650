"""Score a span model (``rag.span_reader``) on gold paragraphs of the pool: each question is read with its own
paragraph, no retrieval, so what is measured is the model and not the retriever.

    python -m eval.score_span_reader [--artifact rag/data/span_reader] [--part calibration|holdout] [--json]

Two figures per part: the share of answerable questions whose best span holds a gold answer ("no answer" ignored),
and the AUC of the margin over "no answer" between answerable and unanswerable questions (what the gate leans on).
The questions are those ``python -m eval.calibrate collect`` reads: 80 of each calibration article, 40 of each
held-out one, by the same seeded sample. Never pick a training setting by the held-out part.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .calibrate import PER_ARTICLE, PER_HOLDOUT_ARTICLE, default_pool
from .metrics import contains_alias
from .reader_data import load_pool, sample_questions, split_articles


def margin_auc(margins: list[float], answerable: list[bool]) -> float:
    """The probability that an answerable question's margin beats an unanswerable one's (ties count half): the
    Mann-Whitney form of the ROC AUC."""
    margins_array, labels = np.asarray(margins, dtype=float), np.asarray(answerable, dtype=bool)
    positives, negatives = margins_array[labels], margins_array[~labels]
    if not len(positives) or not len(negatives):
        return float("nan")
    wins = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return float(wins / (len(positives) * len(negatives)))


def score(span_model, questions: list[tuple[str, str, tuple[str, ...]]]) -> dict:
    """``questions``: (question, its paragraph, gold answers; empty when unanswerable)."""
    right, margins, answerable = 0, [], []
    for question, paragraph, answers in questions:
        span = span_model.best_spans(question, [paragraph])[0]
        right += bool(answers and span and contains_alias(span.text, answers))
        margins.append(span.margin if span else float("-inf"))
        answerable.append(bool(answers))
    n_answerable = sum(answerable)
    return {
        "questions": len(questions),
        "answerable": n_answerable,
        "best_span_right": round(right / n_answerable, 3) if n_answerable else 0.0,
        "margin_auc": round(margin_auc(margins, answerable), 3),
    }


def gold_questions(data: dict, titles: list[str], per_article: int, seed: int) -> list[tuple[str, str, tuple]]:
    paragraph_of = {
        qa["id"]: paragraph["context"]
        for article in data["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }
    chosen = sample_questions(data, titles, per_article, seed)
    return [(q.question, paragraph_of[q.id], q.answers) for items in chosen.values() for q in items]


def main(argv: list[str] | None = None) -> int:
    from rag.span_reader import ARTIFACT_DIR, load_span_model

    parser = argparse.ArgumentParser(prog="python -m eval.score_span_reader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, default=ARTIFACT_DIR, help="Span model folder (default: shipped).")
    parser.add_argument(
        "--part",
        choices=("calibration", "holdout"),
        default="calibration",
        help="Which pool articles to read (default: calibration; held-out only to report, never to choose).",
    )
    parser.add_argument("--pool", type=Path, default=default_pool(), help="SQuAD 2.0 training pool (.json[.gz]).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the article split and question sample.")
    parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")
    args = parser.parse_args(argv)

    data = load_pool(args.pool)
    split = split_articles(data, args.seed)
    titles, per_article = (
        (split.calibration, PER_ARTICLE) if args.part == "calibration" else (split.holdout, PER_HOLDOUT_ARTICLE)
    )
    result = {
        "artifact": str(args.artifact),
        "part": args.part,
        **score(load_span_model(args.artifact), gold_questions(data, titles, per_article, args.seed)),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.part}: best span right {result['best_span_right']} of {result['answerable']} answerable, "
            f"margin AUC {result['margin_auc']} ({result['questions']} questions)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
