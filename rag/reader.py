"""Extractive reading for small models: pick the best sentences first, then decode a span of them.

A 270M-parameter model reads four 200-token passages poorly: it drifts to the wrong number or paraphrases, and it
answers a near-miss question (2032's budget, asked of 2031's) as readily as a real one. Three levers fix part of
that, and the abstention gates (``rag.gates``) with a learned answerability model do the rest (docs/reader.md):

1. Sentence selection. The retrieved chunks are cut into sentences and table rows, and only the few that best
   match the question (embedding cosine plus a word-overlap bonus) are shown, each with its document and heading
   as context. Shorter prompts are also faster.
2. Subject checks (``off_subject``, ``rag.key_terms``). Only sentences whose surroundings name the question's
   names, numbers, codes and quarters, and no other year or code in their place, are read at all.
3. Constrained decoding. The answer may only be a span of the shown sentences (a token trie over them), or
   "unknown". The model chooses which span; it cannot invent one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ingest.catalog import document_title

from .answer_types import answers_type, expected_type, has_type
from .answerability import LOGPROB_FLOOR
from .gates import Reading, run_gates
from .key_terms import conflicts, uncovered_terms, uncovered_words
from .lexicon import is_abstention
from .reader_config import ReaderConfig, ReaderSettings
from .span_reader import Span
from .text import STOPWORDS, contains_answer, normalise, segments, word_f1
from .types import SearchResult

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_TABLE_RULE = re.compile(r"^\|?[\s:|-]+\|?$")


@dataclass(frozen=True)
class Unit:
    """A sentence or table row of a retrieved chunk: what the reader sees and may quote."""

    text: str  # quotable text, verbatim from the chunk
    context: str  # document title, heading and table header: shown, not quotable
    result: int  # index into the retrieval results (for citations)
    before: str = ""  # the previous sentence of the same chunk: where "it" and "the contract" are named


_MAX_LABEL_CHARS = 60


def _is_label(line: str, following: str) -> bool:
    """A short line without closing punctuation that leads an indented or non-empty block: the "Sildre Logistics"
    above "Contract number: SL-4471" in a plain-text register. Markdown headings are already the chunk's heading."""
    return bool(following) and len(line) <= _MAX_LABEL_CHARS and not line.endswith((".", ":", ";", ",", "!", "?"))


_FIELD = re.compile(r"^[A-Z][\w ]{0,30}:\s")  # "Value: NOK 1.4 million", a register's next field


def unwrap(text: str) -> list[str]:
    """The chunk's lines, with hard-wrapped sentences (plain text, PDF extraction) joined again: a long line that
    does not end a sentence continues on the next when that one goes on in lower case or with a number, or when
    the line breaks after a function word ("kept by" / "Finance"); never into a table row, heading, list item or
    "Field:" line."""
    lines: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        previous = lines[-1].strip() if lines else ""
        last_word = previous.rsplit(" ", 1)[-1]
        continues = (
            previous
            and line
            and len(previous) > _MAX_LABEL_CHARS
            and not previous.endswith((".", "!", "?", ":", "|"))
            and not previous.startswith(("|", "#"))
            and not line.startswith(("|", "#", "-", "*", "\u2022"))
            and not _FIELD.match(line)
            and (line[0].islower() or line[0].isdigit() or last_word in STOPWORDS)
        )
        if continues:
            lines[-1] = f"{lines[-1]} {line}"
        else:
            lines.append(raw)
    return lines


def split_units(result: SearchResult, index: int) -> list[Unit]:
    title = document_title(result.source)
    context = f"{title} > {result.heading}" if getattr(result, "heading", "") else title
    units: list[Unit] = []
    header = label = ""
    intro = ""  # the last sentence outside a list or table: what the items of the next list are about
    lines = unwrap(result.text)
    for number, raw in enumerate(lines):
        line = raw.strip()
        following = lines[number + 1].strip() if number + 1 < len(lines) else ""
        if not line:
            label = ""  # a blank line ends the block a label names
            continue
        if _TABLE_RULE.match(line):
            continue
        if line.startswith("|"):
            if _TABLE_RULE.match(following) and following:
                header = line  # a header row labels the rows under it
                continue
            # A row's context is its header, never the row above: that one is about another city or product
            units.append(Unit(line, f"{context} {header}".strip(), index, intro))
            continue
        header = ""
        # A list item follows the line that introduces the list, not the item before it (a sibling, not a referent)
        item = line.startswith(_LIST_MARKS) or bool(_NUMBERED_ITEM.match(line))
        before = intro if item else (units[-1].text if units and units[-1].result == index else "")
        if _is_label(line, following) and not line.startswith("#") and not raw[:1].isspace():
            label = line
        here = f"{context} > {label}" if label and label != line else context
        for sentence in _SENTENCE_END.split(line):
            sentence = sentence.strip().lstrip("#").strip()
            if len(sentence) >= 3:
                units.append(Unit(sentence, here, index, before))
                before = sentence
                if not item:
                    intro = sentence
    return units


_LIST_MARKS = ("- ", "* ", "\u2022")
_NUMBERED_ITEM = re.compile(r"\d{1,2}[.)]\s")


def content_words(text: str) -> set[str]:
    return {w for w in normalise(text).split() if w not in STOPWORDS}


def select_units(
    question: str, results: list[SearchResult], embed, max_units: int = 3, config: ReaderConfig | None = None
) -> tuple[list[Unit], list[float]]:
    """The sentences most likely to hold the answer, best first, with their relevance scores.

    Relevance is the cosine between the question and the sentence in its context, plus a bonus for the share of
    the question's content words it contains. A sentence is a much sharper signal than a 200-token chunk, so the
    answer pipeline's "is anything relevant?" gate uses the best sentence's score.
    """
    units = [unit for i, result in enumerate(results) for unit in split_units(result, i)]
    if not units:
        return [], []
    vectors = embed([question] + [f"{u.context}: {u.text}" for u in units])
    cosine = vectors[1:] @ vectors[0]
    asked = content_words(question)
    lexical = np.array([len(asked & content_words(u.context + " " + u.text)) / max(1, len(asked)) for u in units])
    wanted = expected_type(question)
    typed = np.array([float(wanted is not None and has_type(u.text, wanted)) for u in units])
    retrieval_rank = np.array([u.result for u in units])
    config = config or ReaderConfig()
    relevance = (
        cosine + config.lexical_weight * lexical + config.type_weight * typed - config.rank_penalty * retrieval_rank
    )
    order = np.argsort(-relevance, kind="stable")[:max_units]
    return [units[i] for i in order], [float(relevance[i]) for i in order]


# --- Readers: question + retrieved passages -> an answer or an abstention, with the signals behind it ----------


@dataclass
class ReadResult:
    """What a reader concluded. ``cited`` holds 0-based indices into the retrieval results; ``code`` names the gate
    that abstained (rag.gates), "" for an answer."""

    answer: str
    abstained: bool
    cited: list[int] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)  # for calibrating abstention (eval.calibrate)
    reason: str = ""
    code: str = ""
    second: SecondOpinion | None = None  # the span model's own best span, when it was read


@dataclass(frozen=True)
class SecondOpinion:
    """The span model's best span (``rag.span_reader``) and the retrieval result it came from."""

    text: str
    result: int


class Reader(Protocol):
    def read(self, question: str, results: list[SearchResult], on_token=None) -> ReadResult: ...


class ExtractiveReader:
    """Sentence selection, then span-constrained decoding (``generator.extract``) over the selected sentences, then
    the gates of ``rag.gates`` and the learned answerability model, with the thresholds of ``settings.config``.

    ``observe=True`` (calibration) records every gate and signal and answers whenever the model gives a span, so
    that eval.calibrate can learn which signals tell right answers from wrong ones."""

    def __init__(
        self,
        generator,
        embed,
        settings: ReaderSettings | None = None,
        max_new_tokens: int = 16,
        observe: bool = False,
        span_model=None,
    ) -> None:
        self.generator = generator
        # rag.span_reader's model: a second opinion for the learned gate (None: its signals stay absent)
        self.span_model = span_model
        # A model trained on this reading prompt (eval.raft's adapter, eval.reading_adapter's model) reads it as it
        # was trained: with no examples in front of it
        self.few_shot = not getattr(generator, "trained_to_read", False)
        self.embed = embed
        self.settings = settings or ReaderSettings()
        self.max_new_tokens = max_new_tokens
        self.observe = observe

    @property
    def config(self) -> ReaderConfig:
        return self.settings.config

    def read(self, question: str, results: list[SearchResult], on_token=None) -> ReadResult:
        reading = Reading(question, results, self.config, wanted=expected_type(question))
        signals = reading.signals
        signals["retrieval_score"] = results[0].score if results else 0.0
        signals[f"type:{reading.wanted}"] = 1.0
        signals["question_words"] = float(len(content_words(question)))
        units, relevance = select_units(question, results, self.embed, len(results) * 40, self.config)
        reading.units, reading.relevance = units, relevance
        signals["sentence_score"] = relevance[0] if relevance else 0.0
        if not units:
            return ReadResult(IDK, True, [], signals, "no passage relevant enough to the question", "off_topic")
        # Only sentences about what the question asks are read (off_subject): asked about 2031, Trondheim or the
        # T8, a sentence about 2030, Oslo or the T7 is skipped for the next one.
        mismatches = [off_subject(question, unit, results[unit.result]) for unit in units]
        eligible = [(unit, score) for unit, score, why in zip(units, relevance, mismatches) if not why]
        reading.eligible = [unit for unit, _ in eligible]
        reading.eligible_relevance = [score for _, score in eligible]
        reading.mismatch = mismatches[0]
        signals["off_subject"] = float(len(units) - len(eligible))
        signals["eligible_gap"] = relevance[0] - eligible[0][1] if eligible else 1.0
        reading.to_read = (reading.eligible or units)[: self.config.max_units]
        code, why = run_gates(reading, "before", self.observe)
        if code:
            return ReadResult(IDK, True, [], signals, why, code)
        if signals.get("gate:off_subject"):  # a soft gate: read the best sentences, whatever their subject
            reading.to_read = units[: self.config.max_units]
        found, seen = self._best_reading(question, reading.to_read, reading.wanted)
        reading.answer, reading.seen = found.text.strip(" .,;:"), seen
        reading.mean_logprob, reading.first_logprob = found.mean_logprob, found.first_logprob
        signals.update(
            answer_logprob=found.mean_logprob,
            first_logprob=found.first_logprob,
            abstain_logprob=found.abstain_logprob,
            sentences_read=float(seen),
        )
        if is_abstention(reading.answer):
            signals["gate:model_unknown"] = 1.0
            code, why = "model_unknown", "the passages do not answer the question"
        else:
            self._describe_answer(reading)
            code, why = run_gates(reading, "after", self.observe)
        second = None
        switches = self.settings.span_answers is not None
        if self.span_model is not None and (self.observe or not code or switches):
            second = self._second_opinion(reading)
        if self.observe:  # calibration: the generator's span whenever it gave one, and the span model's beside it
            if code:
                return ReadResult(IDK, True, [], signals, why, code, second=second)
            return ReadResult(reading.answer, False, self._citations(reading), signals, second=second)
        code, why, use_second = self._judge(reading, code, why, second)
        if code:
            return ReadResult(IDK, True, [], signals, why, code, second=second)
        answer, cited = (second.text, [second.result]) if use_second else (reading.answer, self._citations(reading))
        if on_token:
            on_token(answer)
        return ReadResult(answer, False, cited, signals, second=second)

    def _judge(self, reading: Reading, code: str, why: str, second: SecondOpinion | None) -> tuple[str, str, bool]:
        """The learned check: the probability that the generator's span is right (if no hard gate stopped it) and,
        where the settings judge it, that the span model's own span is; the likelier one is the answer when that
        probability reaches ``min_answer_probability``. Returns (code, why, answer with the span model's span?)."""
        signals, settings = reading.signals, self.settings
        options = []
        if not code:
            signals["answer_probability"] = (
                settings.answerability.probability(signals) if settings.answerability else 1.0
            )
            options.append((signals["answer_probability"], False))
        if second is not None and settings.span_answers is not None:
            signals["second_probability"] = settings.span_answers.probability(signals)
            options.append((signals["second_probability"], True))
        if not options:
            return code, why, False
        probability, use_second = max(options, key=lambda option: option[0])  # a tie keeps the generator's span
        if probability >= self.config.min_answer_probability:
            return "", "", use_second
        if code:  # a gate stopped the generator's span, and the span model's is too doubtful to stand in for it
            return code, why, False
        said = second.text if use_second else reading.answer
        return "answerability", f"the learned check doubts {said!r} ({probability:.2f})", False

    def _citations(self, reading: Reading) -> list[int]:
        """The results the generator's span was read from: the sentences shown that hold it, else the first chunk."""
        shown = reading.to_read[: reading.seen]
        cited = [unit.result for unit in shown if contains_answer(unit.text, reading.answer)]
        cited = cited or [i for i, r in enumerate(reading.results) if contains_answer(r.text, reading.answer)][:1]
        return list(dict.fromkeys(cited))

    def _second_opinion(self, reading: Reading) -> SecondOpinion | None:
        """The span model's best span over every retrieved chunk, with the signals that say how far to trust it."""
        question, results = reading.question, reading.results
        said = "" if is_abstention(reading.answer) else reading.answer
        found = span_signals(self.span_model, question, results, said)
        reading.signals.update(found.signals)
        if found.span is None or is_abstention(found.span.text):  # nothing to answer with ("" or "none")
            return None
        span, signals = found.span, reading.signals
        source = results[span.passage]
        unit = next((u for u in split_units(source, span.passage) if contains_answer(u.text, span.text)), None)
        asked, spoken = content_words(question), content_words(span.text)
        where = f"{unit.context} {unit.text}" if unit else source.text
        signals["span_rank"] = float(span.passage)
        signals["span_chunk_score"] = source.score
        signals["span_typed"] = -1.0 if reading.wanted is None else float(has_type(span.text, reading.wanted))
        signals["span_echo"] = float(bool(spoken) and spoken <= asked)
        signals["span_words"] = float(len(span.text.split()))
        signals["span_coverage"] = len(asked & content_words(where)) / max(1, len(asked))
        return SecondOpinion(span.text, span.passage)

    def _describe_answer(self, reading: Reading) -> None:
        """The signals about the span read: its sentence, whether it repeats the question, how much of the
        question its sentence and surroundings cover, whether it has the wanted type."""
        signals, answer, question = reading.signals, reading.answer, reading.question
        shown = reading.to_read[: reading.seen]
        source = next((unit for unit in shown if contains_answer(unit.text, answer)), shown[0])
        asked, said = content_words(question), content_words(answer)
        signals["echo"] = float(bool(said) and said <= asked)
        signals["answer_words"] = float(len(answer.split()))
        signals["coverage"] = len(asked & content_words(f"{source.context} {source.text}")) / max(1, len(asked))
        words = sorted(asked)
        near = surroundings(source, reading.results[source.result])
        signals["near_coverage"] = 1 - len(uncovered_words(words, near)) / len(words) if words else 1.0
        signals["typed"] = -1.0 if reading.wanted is None else float(has_type(answer, reading.wanted))
        reading.clause = next((piece for piece in segments(source.text) if contains_answer(piece, answer)), "")

    def _best_reading(self, question: str, units: list[Unit], wanted: str | None):
        """Read the best sentence alone; when the model is unsure of its span (mean token log-probability under
        ``config.sure_logprob``) or says "unknown" there, read the best ``max_units`` sentences together instead.

        Why: given several sentences, the 270M model often quotes a number from the wrong one; given the right one
        alone it is right 95% of the time. Measured on the demo QA train split (141 answerable; never on test):
        the best 3 sentences in one prompt 0.54 accuracy, the best sentence alone 0.57, each of the best 3 read
        alone and the surest span kept 0.60 (at twice the latency), this rule 0.65 (p50 1.1 s, as before).
        Returns the reading and how many sentences it saw."""
        from .prompting import Passage, extractive_prefix, extractive_query

        prefix = extractive_prefix() if self.few_shot else ""

        def read(chosen: list[Unit]):
            passages = [Passage(n, unit.context, unit.text) for n, unit in enumerate(chosen, start=1)]
            spans = [piece for unit in chosen for piece in segments(unit.text)]
            typed = [piece for piece in spans if answers_type(piece, wanted, question)]
            # a "when" question is answered by a date, a "how much" one by a number
            return self.generator.extract(
                extractive_query(question, passages), typed or spans, self.max_new_tokens, prefix=prefix
            )

        found = read(units[:1])
        unsure = is_abstention(found.text.strip(" .,;:")) or found.mean_logprob < self.config.sure_logprob
        if len(units) > 1 and unsure:
            return read(units), len(units)
        return found, 1


@dataclass(frozen=True)
class SpanFound:
    span: Span | None
    signals: dict[str, float]


def span_signals(span_model, question: str, results: list[SearchResult], answer: str) -> SpanFound:
    """The span model's best span over every retrieved chunk: how far it beats "no answer" (``span_margin``), how
    far it beats the best span of any other chunk (``span_lead``) and how much it agrees with the generator's span
    (``span_agrees``, word F1: two different readers that pick the same words are right more often than either
    alone)."""
    spans = [span for span in span_model.best_spans(question, [r.text for r in results]) if span is not None]
    if not spans:
        return SpanFound(None, {"span_margin": LOGPROB_FLOOR, "span_agrees": 0.0})
    best, *others = sorted(spans, key=lambda span: span.margin, reverse=True)
    lead = best.margin - others[0].margin if others else -LOGPROB_FLOOR  # one chunk read: nothing to beat
    return SpanFound(best, {"span_margin": best.margin, "span_agrees": word_f1(answer, best.text), "span_lead": lead})


def surroundings(unit: Unit, result: SearchResult) -> str:
    """A sentence with what names its subject: its heading or label, the sentence before it and its document's path."""
    return f"{unit.context} {unit.before} {unit.text} {result.source.replace('/', ' ')}"


def off_subject(question: str, unit: Unit, result: SearchResult) -> str:
    """Why ``unit`` is not about what ``question`` asks, or "" when it may be.

    Two checks, both on names, numbers, codes and quarters, never on ordinary words (a question may paraphrase):
    the question's terms must all appear in the sentence's surroundings (its heading or table header, the sentence
    before it, the document's path and the document's opening, which says what the whole document is about), and
    the sentence with its heading must not name another year, quarter, weekday or code in place of the question's."""
    missing = uncovered_terms(question, f"{surroundings(unit, result)} {result.lead}")
    if missing:
        return f"no passage gives an answer about {', '.join(missing)}"
    clash = conflicts(question, f"{unit.context} {unit.text}")
    if clash:
        return f"the passages that could answer are about {clash[0]}"
    return ""


IDK = "I don't know."
