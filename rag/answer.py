"""The answer pipeline: retrieve what the user may read, let a reader answer or abstain, cite, time each stage.

The reader is pluggable (``rag.reader.Reader``): the default extractive reader picks the best sentences and decodes a
span of them; any other generator (an instruction-tuned model, a test fake) gets a few-shot or chat prompt with
numbered passages and answers with citation marks. Abstention, cheapest first:
1. nothing was retrieved, or nothing relevant enough (a score threshold; the model is not called);
2. a name, number or code of the question appears in no retrieved passage, or (extractive reader) in no sentence's
   surroundings without another year or code in its place (``rag.key_terms``; the model is not called);
3. the model says the passages do not answer ("unknown"), or (extractive reader) its answer fails a check;
4. the generative reader's answer is not supported by any passage (``rag.support``: verbatim, or all its content
   words): an answer the passages don't support is not given.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from .lexicon import is_abstention
from .prompting import UNKNOWN, Passage, chat_content, chat_messages, completion_prompt, fit_passages
from .reader import IDK, ExtractiveReader, Reader, ReadResult
from .reader_config import load_settings
from .span_reader import cached_span_model
from .support import supports
from .types import Answer, Citation, SearchResult

DEFAULT_K = 5
# Cosine similarity of MiniLM between the question and its best chunk, for the generative reader (the extractive
# reader gates on its sharper best-sentence score, ReaderConfig.min_sentence_score). Calibrated on the demo QA dev split
# (corpora/acme-qa.jsonl, split "dev"): the 5th percentile of the answerable questions' best chunk scores (0.30)
# less a 0.02 margin. Below it, no passage is relevant enough to read.
MIN_RETRIEVAL_SCORE = 0.28
STOP = ("\n", "Question:", "Passages:")
_CITATION = re.compile(r"\[(\d{1,2})\]")


def answer_question(
    retriever,
    generator,
    question: str,
    user: str | None = None,
    k: int = DEFAULT_K,
    max_new_tokens: int | None = None,
    on_token: Callable[[str], None] | None = None,
    min_score: float | None = None,
    reader=None,
) -> Answer:
    """Answer ``question`` from what ``user`` may read; ``Answer.abstained`` with "I don't know." otherwise.
    ``max_new_tokens``: the longest answer in tokens; ``None`` keeps the reader's own limit."""
    return answer_with_details(retriever, generator, question, user, k, max_new_tokens, on_token, min_score, reader)[0]


def answer_with_details(
    retriever,
    generator,
    question: str,
    user: str | None = None,
    k: int = DEFAULT_K,
    max_new_tokens: int | None = None,
    on_token: Callable[[str], None] | None = None,
    min_score: float | None = None,
    reader=None,
) -> tuple[Answer, ReadResult]:
    """``answer_question`` plus the reader's result, whose ``signals`` (retrieval score, sentence score, answer
    log-probabilities, ...) are what abstention thresholds are calibrated on."""
    started = time.perf_counter()
    results: list[SearchResult] = retriever.search(question, k=k, user=user)
    retrieved = time.perf_counter()
    timings = {"retrieval": round(retrieved - started, 4)}
    if reader is None:
        embedder = getattr(retriever, "embedder", None)
        reader = make_reader(generator, getattr(embedder, "embed", None), getattr(embedder, "name", None))
    if max_new_tokens is not None:  # asked for: applies to any reader, above its default too
        reader.max_new_tokens = max_new_tokens
    if isinstance(reader, GenerativeReader):
        reader.min_score = MIN_RETRIEVAL_SCORE if min_score is None else min_score
    if not results:
        read = ReadResult(IDK, True, [], {}, "nothing readable was retrieved")
    else:
        read = reader.read(question, results, on_token)
    finished = time.perf_counter()
    timings.update(generation=round(finished - retrieved, 4), total=round(finished - started, 4))
    if read.abstained:
        return Answer(IDK, True, [], timings, reason=read.reason), read
    citations = [
        Citation(n=i + 1, source=results[i].source, chunk_id=results[i].chunk_id, score=results[i].score)
        for i in read.cited
    ]
    return Answer(read.answer, False, citations, timings), read


class GenerativeReader:
    """Free greedy generation from numbered passages; the answer must be supported by a passage (``rag.support``)."""

    def __init__(self, generator, max_new_tokens: int = 48, min_score: float = MIN_RETRIEVAL_SCORE) -> None:
        self.generator = generator
        self.max_new_tokens = max_new_tokens
        self.min_score = min_score

    def read(self, question: str, results: list[SearchResult], on_token=None) -> ReadResult:
        signals = {"retrieval_score": results[0].score}
        if results[0].score < self.min_score:
            return ReadResult(IDK, True, [], signals, "no passage relevant enough to the question")
        raw = read(self.generator, question, results, self.max_new_tokens, on_token)
        answer, cited = parse_output(raw, len(results))
        if is_abstention(answer):
            return ReadResult(IDK, True, [], signals, "the passages do not answer the question")
        supporting = [i for i, r in enumerate(results, start=1) if supports(r.text, answer)]
        signals["verbatim"] = float(bool(supporting))
        if not supporting:
            return ReadResult(IDK, True, [], signals, f"the model's answer {answer!r} is not in the passages")
        chosen = [n for n in cited if n in supporting] or supporting[:1]
        return ReadResult(answer, False, [n - 1 for n in chosen], signals)


def make_reader(generator, embed=None, embedder_name: str | None = None) -> Reader:
    """The extractive reader when the generator can constrain its decoding and an embedder is at hand (the default
    pipeline), with the settings calibrated for this (embedder, generator) pair; otherwise free few-shot (or chat)
    generation with citation marks, checked against the passages (``GenerativeReader``)."""
    if hasattr(generator, "extract") and embed is not None:
        embedder_name = embedder_name or getattr(getattr(embed, "__self__", None), "name", "unknown-embedder")
        settings = load_settings(embedder_name, getattr(generator, "name", ""))
        span_model = cached_span_model() if settings.reads_span_model else None
        return ExtractiveReader(generator, embed, settings, span_model=span_model)
    return GenerativeReader(generator)


def read(generator, question: str, results: list[SearchResult], max_new_tokens: int, on_token=None) -> str:
    passages = [Passage(i, r.source, r.text) for i, r in enumerate(results, start=1)]
    if getattr(generator, "speaks_chat", False):  # an LLM server's chat endpoint applies the model's own template
        build = chat_content
    else:
        build = _chat_builder(generator) if _wants_chat(generator) else completion_prompt
    budget = min(generator.context_window, 4096) - max_new_tokens - 8
    passages = fit_passages(question, passages, build, generator.count_tokens, budget)
    prompt = build(question, passages)
    pieces = []
    shown = 0  # pieces already passed to on_token
    for piece in generator.stream(prompt, max_new_tokens=max_new_tokens, stop=STOP):
        pieces.append(piece)
        # Hold the text back while it could still be the model's "unknown": a client must not see the abstention
        # marker stream in before the verdict "I don't know."
        if on_token and not UNKNOWN.startswith("".join(pieces).strip().lower()):
            for held in pieces[shown:]:
                on_token(held)
            shown = len(pieces)
    return "".join(pieces)


def parse_output(raw: str, n_passages: int) -> tuple[str, list[int]]:
    """Split "12 May 2031 [2]" into the answer and the valid passage numbers it cites."""
    cited = []
    for match in _CITATION.finditer(raw):
        n = int(match.group(1))
        if 1 <= n <= n_passages and n not in cited:
            cited.append(n)
    answer = _CITATION.sub("", raw).strip().strip('"').strip()
    answer = answer.rstrip(" .;,")
    return answer, cited


def _wants_chat(generator) -> bool:
    # The bundled Gemma is a base model: few-shot completion beats any chat template on it.
    return bool(getattr(generator, "has_chat_template", False)) and getattr(generator, "name", "") != "gemma-3-270m"


def _chat_builder(generator):
    def build(question: str, passages: list[Passage]) -> str:
        return generator.tokenizer.apply_chat_template(
            chat_messages(question, passages), tokenize=False, add_generation_prompt=True
        )

    return build


__all__ = [
    "answer_question",
    "answer_with_details",
    "GenerativeReader",
    "make_reader",
    "parse_output",
    "read",
    "IDK",
    "UNKNOWN",
    "MIN_RETRIEVAL_SCORE",
    "DEFAULT_K",
]
