"""Scoring answers: normalisation, aliases, abstention, rates and bootstrap confidence intervals. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.lexicon import is_abstention  # the product's list (rag/data/abstain_phrases.txt): both count the same
from rag.text import normalise, word_f1

__all__ = ["is_abstention"]


def contains_alias(answer: str, aliases) -> bool:
    text = f" {normalise(answer)} "
    return any(normalise(a) and f" {normalise(a)} " in text for a in aliases)


def exact_match(answer: str, aliases) -> bool:
    return any(normalise(answer) == normalise(a) for a in aliases)


def token_f1(answer: str, aliases) -> float:
    return max((word_f1(answer, alias) for alias in aliases), default=0.0)


@dataclass
class Scored:
    """One question's outcome for one system."""

    answerable: bool
    abstained: bool
    correct: bool  # an alias is contained in the answer (never true when abstained)
    exact: bool
    f1: float

    @property
    def hallucinated(self) -> bool:
        return not self.abstained and (not self.answerable or not self.correct)


def score(answer: str, abstained: bool, aliases) -> Scored:
    abstained = abstained or is_abstention(answer)
    answerable = bool(aliases)
    if abstained or not answerable:
        return Scored(answerable, abstained, False, False, 0.0)
    return Scored(
        answerable, False, contains_alias(answer, aliases), exact_match(answer, aliases), token_f1(answer, aliases)
    )


def rates(outcomes: list[Scored]) -> dict[str, float]:
    n = len(outcomes)
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    answered = [o for o in outcomes if not o.abstained]
    return {
        "accuracy": _frac(sum(o.correct for o in outcomes), n),
        "exact_match": _frac(sum(o.exact for o in outcomes), n),
        "f1": _frac(sum(o.f1 for o in outcomes), n),
        "abstention_rate": _frac(sum(o.abstained for o in outcomes), n),
        "hallucination_rate": _frac(sum(o.hallucinated for o in outcomes), n),
        "accuracy_given_answered": _frac(sum(o.correct for o in answered), len(answered)),
        "answerable_accuracy": _frac(sum(o.correct for o in answerable), len(answerable)),
        "false_answer_rate": _frac(sum(not o.abstained for o in unanswerable), len(unanswerable)),
        "answerable_abstention_rate": _frac(sum(o.abstained for o in answerable), len(answerable)),
    }


def _frac(part: float, whole: int) -> float:
    return float(part) / whole if whole else 0.0


def bootstrap_cis(outcomes: list[Scored], samples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% percentile bootstrap intervals of every rate, resampling questions with replacement."""
    if not outcomes:
        return {}
    rng = np.random.default_rng(seed)
    n = len(outcomes)
    draws = [rates([outcomes[i] for i in rng.integers(0, n, n)]) for _ in range(samples)]
    intervals = {}
    for metric in draws[0]:
        low, high = np.percentile([d[metric] for d in draws], [2.5, 97.5])
        intervals[metric] = (round(float(low), 4), round(float(high), 4))
    return intervals


def bootstrap_ci(outcomes: list[Scored], metric: str, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    return bootstrap_cis(outcomes, samples, seed).get(metric, (0.0, 0.0))


def summarise(outcomes: list[Scored], seed: int = 0, samples: int = 1000) -> dict:
    """Every rate, its 95% CI, and the counts."""
    summary: dict = dict(rates(outcomes))
    summary["ci95"] = bootstrap_cis(outcomes, samples, seed)
    summary["n"] = len(outcomes)
    summary["n_answerable"] = sum(o.answerable for o in outcomes)
    summary["n_unanswerable"] = summary["n"] - summary["n_answerable"]
    return summary


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: sound at 0 and 1, where a bootstrap collapses to a point."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5 / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))
