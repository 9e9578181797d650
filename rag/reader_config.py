"""Every number the extractive reader decides by, in one ``ReaderConfig``, saved per (embedder, generator) pair.

A threshold on a span's log-probability means something for one generator only, and a sentence score for one
embedder only. So the reader loads the config calibrated for the pair it actually runs with
(``python -m eval.calibrate`` writes one for any pair), and falls back to ``ReaderConfig()``, the hand-set values
documented below, with a warning when there is none. The config file also carries the learned answerability model
(``rag.answerability``) and where it came from.

Lookup order for a pair: ``$RAG_READER_DIR``, then the user's cache (``~/.cache/docrag/reader``, where calibrate
writes by default), then the files shipped in ``rag/data/reader``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path

from .answerability import AnswerabilityModel

SHIPPED_DIR = Path(__file__).parent / "data" / "reader"
FORMAT = 1


@dataclass(frozen=True)
class ReaderConfig:
    """The reader's thresholds and weights. The defaults are the values hand-set on the demo corpus's train and dev
    splits before calibration existed (see docs/reader.md); calibrated files replace them per model pair."""

    # Sentence selection: relevance = cosine + lexical_weight * word overlap + type_weight * has the wanted type
    # - rank_penalty * the place of the sentence's chunk in the retrieval ranking
    max_units: int = 3
    lexical_weight: float = 0.4
    type_weight: float = 0.1
    rank_penalty: float = 0.02
    # Best sentence's relevance under which nothing retrieved is on topic (gate "off_topic")
    min_sentence_score: float = 0.40
    # How far below the best sentence the best one about the question's subject may rank (gate "off_subject")
    max_relevance_gap: float = 0.05
    # Mean token log-probability of the best sentence's span under which the best max_units sentences are read
    sure_logprob: float = -0.7
    # Gate "unsure": a span read from several sentences with a mean token log-probability under this
    min_wide_logprob: float = -1.3
    # Gate "far_from_question": the answer's sentence and surroundings hold under this share of the question's words
    min_near_coverage: float = 0.2
    # Gate "unprompted": the unconstrained model gives the span's first token a log-probability under this
    min_first_logprob: float = -3.0
    # Gate "answerability": the learned model's probability that the answer is right, under this
    min_answer_probability: float = 0.0
    # Gates that end reading when they fire, in order; the others are only signals (features of the learned model)
    hard_gates: tuple[str, ...] = (
        "off_topic",
        "missing_term",
        "off_subject",
        "no_typed_span",
        "model_unknown",
        "echo",
        "wrong_type",
        "conflict",
        "unsure",
        "far_from_question",
        "unprompted",
    )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["hard_gates"] = list(self.hard_gates)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ReaderConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "hard_gates" in values:
            values["hard_gates"] = tuple(values["hard_gates"])
        return cls(**values)


@dataclass
class ReaderSettings:
    """A pair's config with its answerability models and provenance: ``answerability`` judges the generator's span
    (None: no learned gate), ``span_answers`` the span model's own span (None: the reader never answers with it)."""

    config: ReaderConfig = field(default_factory=ReaderConfig)
    answerability: AnswerabilityModel | None = None
    embedder: str = ""
    generator: str = ""
    provenance: dict = field(default_factory=dict)
    path: Path | None = None
    span_answers: AnswerabilityModel | None = None

    @property
    def reads_span_model(self) -> bool:
        """The reader must run the span model (rag.span_reader): its span may be the answer, or the learned gate
        weighs its signals."""
        weighs = self.answerability is not None and self.answerability.weighs_span_model
        return weighs or self.span_answers is not None

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "embedder": self.embedder,
            "generator": self.generator,
            "config": self.config.to_dict(),
            "answerability": self.answerability.to_dict() if self.answerability else None,
            "span_answers": self.span_answers.to_dict() if self.span_answers else None,
            "provenance": self.provenance,
        }

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / settings_filename(self.embedder, self.generator)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def from_file(cls, path: Path) -> ReaderSettings:
        data = json.loads(path.read_text(encoding="utf-8"))
        model, span_answers = data.get("answerability"), data.get("span_answers")
        return cls(
            ReaderConfig.from_dict(data.get("config", {})),
            AnswerabilityModel.from_dict(model) if model else None,
            data.get("embedder", ""),
            data.get("generator", ""),
            data.get("provenance", {}),
            path,
            AnswerabilityModel.from_dict(span_answers) if span_answers else None,
        )


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


def settings_filename(embedder: str, generator: str) -> str:
    return f"{_slug(embedder)}__{_slug(generator)}.json"


def search_dirs() -> list[Path]:
    from ingest.common import cache_dir

    dirs = [Path(os.environ["RAG_READER_DIR"])] if os.environ.get("RAG_READER_DIR") else []
    return dirs + [cache_dir("reader"), SHIPPED_DIR]


@cache
def load_settings(embedder: str, generator: str) -> ReaderSettings:
    """The settings calibrated for this (embedder, generator) pair, else the defaults with a one-time warning."""
    name = settings_filename(embedder, generator)
    for directory in search_dirs():
        if (directory / name).is_file():
            return ReaderSettings.from_file(directory / name)
    print(
        f"warning: no reader calibration for embedder {embedder!r} with generator {generator!r}; using the "
        "default thresholds (run `python -m eval.calibrate --embedder ... --generator ...` to make one)",
        file=sys.stderr,
    )
    return ReaderSettings(embedder=embedder, generator=generator)
