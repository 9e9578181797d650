"""A learned answerability gate: the probability that the reader's answer is right, from the signals it computed.

A logistic regression over standardised features (``features``), trained by ``eval.calibrate`` on real questions of
the SQuAD 2.0 pool (answerable ones and their adversarial unanswerable twins) and the demo corpus's train split.
It replaces hand thresholds on single signals: no one signal separates a right answer from a wrong one, several
together do better (measured in docs/reader.md). Weights are plain JSON; nothing is unpickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SPAN_SIGNALS = ("span_margin", "span_agrees")  # rag.span_reader's second opinion (rag.reader.span_signals)
# Signals of ReadResult.signals the generator's model reads, each a float; absent ones count as 0.
SIGNALS = (
    "retrieval_score",
    "sentence_score",
    "eligible_gap",
    "missing_terms",
    "off_subject",
    "answer_logprob",
    "first_logprob",
    "abstain_logprob",
    "sentences_read",
    "echo",
    "coverage",
    "near_coverage",
    "answer_words",
    "question_words",
    "typed",
    *SPAN_SIGNALS,
)
# What the span model's own span is judged by: its margins, where it was found, what it looks like, and what the
# generator made of the same passages (a generator sure of "unknown" speaks against any span)
SECOND_SIGNALS = (
    "span_margin",
    "span_lead",
    "span_agrees",
    "span_rank",
    "span_chunk_score",
    "span_typed",
    "span_echo",
    "span_words",
    "span_coverage",
    "retrieval_score",
    "sentence_score",
    "question_words",
    "answer_logprob",
    "first_logprob",
    "abstain_logprob",
)
EXPECTED_TYPES = ("date", "money", "identifier", "number", "person")
LOGPROB_FLOOR = -20.0  # -inf (no token read) as a number a linear model can weigh


def features(signals: dict[str, float], gates: tuple[str, ...], names: tuple[str, ...] = SIGNALS) -> list[float]:
    """The model's input: the signals ``names``, the first-token margin over "unknown", the wanted answer type
    one-hot, and one flag per gate that fired (``gate:<code>`` signals)."""
    values = [max(LOGPROB_FLOOR, float(signals.get(name, 0.0))) for name in names]
    first, unknown = (max(LOGPROB_FLOOR, float(signals.get(n, 0.0))) for n in ("first_logprob", "abstain_logprob"))
    values.append(first - unknown)
    values += [float(signals.get(f"type:{kind}", 0.0)) for kind in EXPECTED_TYPES]
    values += [float(signals.get(f"gate:{code}", 0.0)) for code in gates]
    return values


def feature_names(gates: tuple[str, ...], names: tuple[str, ...] = SIGNALS) -> list[str]:
    return [*names, "first_margin", *(f"type:{k}" for k in EXPECTED_TYPES), *(f"gate:{g}" for g in gates)]


@dataclass
class AnswerabilityModel:
    """p(answer right) = sigmoid(bias + sum(weight * (x - mean) / scale)) over ``features(signals, gates, names)``.
    ``names`` is SIGNALS for the generator's span, SECOND_SIGNALS for the span model's."""

    gates: tuple[str, ...]
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    names: tuple[str, ...] = SIGNALS

    def probability(self, signals: dict[str, float]) -> float:
        x = features(signals, self.gates, self.names)
        z = self.bias + sum(w * (v - m) / s for w, v, m, s in zip(self.weights, x, self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    @property
    def weighs_span_model(self) -> bool:
        """Whether the span model's signals count (a gate fitted without them has zero weights there)."""
        return any(w for name, w in zip(self.names, self.weights) if name.startswith("span_"))

    def to_dict(self) -> dict:
        return {
            "features": feature_names(self.gates, self.names),
            "signals": list(self.names),
            "gates": list(self.gates),
            "mean": [round(v, 6) for v in self.mean],
            "scale": [round(v, 6) for v in self.scale],
            "weights": [round(v, 6) for v in self.weights],
            "bias": round(self.bias, 6),
        }

    @classmethod
    def from_dict(cls, data: dict) -> AnswerabilityModel:
        gates, names = tuple(data["gates"]), tuple(data.get("signals", SIGNALS))
        if names not in (SIGNALS, SECOND_SIGNALS) or list(data["features"]) != feature_names(gates, names):
            from ingest.common import ModelLoadError

            raise ModelLoadError(
                "the reader's answerability model was trained on other features than this version computes; "
                "rerun `python -m eval.calibrate collect` and `python -m eval.calibrate fit`"
            )
        return cls(gates, list(data["mean"]), list(data["scale"]), list(data["weights"]), float(data["bias"]), names)
