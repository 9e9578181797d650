"""The extractive reader's abstention checks: small gate objects in one ordered list, each with a reason code.

A gate looks at a ``Reading`` (the question, the sentences found, and after reading the model's span and the
signals computed about it) and returns why the reader should not answer, or "". Gates of stage "before" run before
the model is called, so a question the passages cannot answer costs no generation; gates of stage "after" judge
the span read. Every gate is always evaluated and recorded as a signal (``gate:<code>``); the ones named in
``ReaderConfig.hard_gates`` also end reading, and the learned answerability model weighs the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .answer_types import STRICT, answers_type, has_type
from .key_terms import conflicts, missing_terms
from .lexicon import is_abstention
from .reader_config import ReaderConfig
from .text import segments
from .types import SearchResult

KIND_NAMES = {"money": "amount of money", "number": "number", "identifier": "number or code"}


@dataclass
class Reading:
    """What the reader knows about one question so far; gates read it, the reader fills it in."""

    question: str
    results: list[SearchResult]
    config: ReaderConfig
    units: list = field(default_factory=list)  # candidate sentences (rag.reader.Unit), best first
    relevance: list[float] = field(default_factory=list)
    wanted: str | None = None  # the answer type the question asks for (rag.answer_types.expected_type)
    eligible: list = field(default_factory=list)  # units about the question's subject, best first
    eligible_relevance: list[float] = field(default_factory=list)
    mismatch: str = ""  # why the best unit is off the question's subject
    to_read: list = field(default_factory=list)  # the units shown to the model
    signals: dict[str, float] = field(default_factory=dict)
    # after reading
    answer: str = ""
    clause: str = ""  # the piece of the answer's sentence that holds it
    seen: int = 0  # sentences the span was read from
    mean_logprob: float = float("-inf")
    first_logprob: float = float("-inf")


class Gate:
    code = ""
    stage = "after"

    def check(self, reading: Reading) -> str:
        """Why not to answer, or "" to let the reading go on."""
        raise NotImplementedError


class OffTopic(Gate):
    """No sentence is relevant enough to the question: the user asked about something the index does not hold."""

    code, stage = "off_topic", "before"

    def check(self, reading: Reading) -> str:
        if not reading.relevance or reading.relevance[0] < reading.config.min_sentence_score:
            return "no passage relevant enough to the question"
        return ""


class MissingTerm(Gate):
    """A name, number, code or quarter of the question appears in no retrieved passage."""

    code, stage = "missing_term", "before"

    def check(self, reading: Reading) -> str:
        missing = missing_terms(reading.question, reading.results)
        reading.signals["missing_terms"] = float(len(missing))
        return f"the passages do not mention {', '.join(missing)}" if missing else ""


class OffSubject(Gate):
    """No sentence about what the question asks (its names, years, codes) ranks near the best sentence."""

    code, stage = "off_subject", "before"

    def check(self, reading: Reading) -> str:
        config = reading.config
        floor = max(reading.relevance[0] - config.max_relevance_gap, config.min_sentence_score)
        if not reading.eligible or reading.eligible_relevance[0] < floor:
            return reading.mismatch or "no passage is about what the question asks"
        return ""


class NoTypedSpan(Gate):
    """The question wants an amount, a number or a code, and no sentence to be read holds one."""

    code, stage = "no_typed_span", "before"

    def check(self, reading: Reading) -> str:
        wanted = reading.wanted
        if wanted not in STRICT:
            return ""
        pieces = (piece for unit in reading.to_read for piece in segments(unit.text))
        if any(answers_type(piece, wanted, reading.question) for piece in pieces):
            return ""
        return f"the passages give no {KIND_NAMES[wanted]}"


class ModelUnknown(Gate):
    """The model chose "unknown" over every span."""

    code = "model_unknown"

    def check(self, reading: Reading) -> str:
        return "the passages do not answer the question" if is_abstention(reading.answer) else ""


class Echo(Gate):
    """The only span found is made of the question's own words."""

    code = "echo"

    def check(self, reading: Reading) -> str:
        return f"the only span found, {reading.answer!r}, repeats the question" if reading.signals.get("echo") else ""


class WrongType(Gate):
    """The question wants an amount, number or code, and the span is none (a wide reading may fall back to one)."""

    code = "wrong_type"

    def check(self, reading: Reading) -> str:
        wanted = reading.wanted
        if wanted in STRICT and not has_type(reading.answer, "number" if wanted == "money" else wanted):
            return f"{reading.answer!r} is no {KIND_NAMES[wanted]}"
        return ""


class Conflict(Gate):
    """The clause holding the span names another year, quarter, weekday, code or role than the question."""

    code = "conflict"

    def check(self, reading: Reading) -> str:
        clash = conflicts(reading.question, reading.clause)
        return f"{reading.answer!r} is given for {clash[0]}" if clash else ""


class Unsure(Gate):
    """Read from several sentences, the span's mean token log-probability is low."""

    code = "unsure"

    def check(self, reading: Reading) -> str:
        if reading.seen > 1 and reading.mean_logprob < reading.config.min_wide_logprob:
            return "the model is unsure of every span in the passages"
        return ""


class FarFromQuestion(Gate):
    """The answer's sentence, with its heading and the sentence before it, shares few of the question's words."""

    code = "far_from_question"

    def check(self, reading: Reading) -> str:
        if reading.signals.get("near_coverage", 1.0) < reading.config.min_near_coverage:
            return f"the sentence holding {reading.answer!r} is about something else"
        return ""


class Unprompted(Gate):
    """Unconstrained, the model would not start this span: its first token is unlikely."""

    code = "unprompted"

    def check(self, reading: Reading) -> str:
        if reading.first_logprob < reading.config.min_first_logprob:
            return f"the model would not give {reading.answer!r} on its own"
        return ""


GATES: tuple[Gate, ...] = (
    OffTopic(),
    MissingTerm(),
    OffSubject(),
    NoTypedSpan(),
    ModelUnknown(),
    Echo(),
    WrongType(),
    Conflict(),
    Unsure(),
    FarFromQuestion(),
    Unprompted(),
)
GATE_CODES = tuple(gate.code for gate in GATES)


def run_gates(reading: Reading, stage: str, observe: bool = False) -> tuple[str, str]:
    """Evaluate the gates of ``stage`` in order, recording each as ``gate:<code>``; the first hard gate that fires
    gives (code, reason), unless ``observe`` (calibration: every signal is wanted, nothing stops). ("", "") else."""
    for gate in GATES:
        if gate.stage != stage:
            continue
        why = gate.check(reading)
        reading.signals[f"gate:{gate.code}"] = float(bool(why))
        if why and gate.code in reading.config.hard_gates and not observe:
            return gate.code, why
    return "", ""
