"""The answer pipeline: retrieve what the user may read, decide whether it is relevant, read, cite, or abstain.

Abstention happens in three places, each cheaper than the next:
1. nothing relevant was retrieved (the best passage scores under ``MIN_RETRIEVAL_SCORE``): the model is not called;
2. the model says the passages do not answer ("unknown");
3. the model's answer is not found in any passage: an answer the passages don't support is not given.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from .prompting import UNKNOWN, Passage, chat_messages, completion_prompt, extractive_prompt, fit_passages
from .reader import select_units
from .text import contains_answer, normalise
from .types import Answer, Citation, SearchResult

DEFAULT_K = 5
# Cosine similarity of MiniLM between the question and its best passage. Calibrated on the demo QA dev split
# (corpora/acme-qa.jsonl, split "dev", `python -m eval.ask_eval --calibrate`): the 5th percentile of the
# answerable questions' best scores (0.30) less a 0.02 margin. Below it, no passage is relevant enough to read.
MIN_RETRIEVAL_SCORE = 0.28
# The same gate for the extractive reader, on the best sentence's relevance (reader.select_units), which separates
# on-topic from off-topic questions far better than a whole chunk's score. Calibrated on the same dev split: the
# lowest best-sentence score of an answerable dev question (0.417) less 0.02, so no answerable dev question is
# gated. Plausible unanswerable questions score higher (0.52-0.78); the reader has to catch those.
MIN_SENTENCE_SCORE = 0.40
STOP = ("\n", "Question:", "Passages:")
_CITATION = re.compile(r"\[(\d{1,2})\]")
_ABSTAIN_PHRASES = {
    "unknown",
    "i dont know",
    "i do not know",
    "not stated",
    "not mentioned",
    "no answer",
    "none",
    "not specified",
    "the passages do not say",
    "cannot be determined",
    "not known",
    "n a",
}
IDK = "I don't know."


def answer_question(
    retriever,
    generator,
    question: str,
    user: str | None = None,
    k: int = DEFAULT_K,
    max_new_tokens: int = 48,
    on_token: Callable[[str], None] | None = None,
    min_score: float | None = None,
) -> Answer:
    started = time.perf_counter()
    embed = getattr(getattr(retriever, "embedder", None), "embed", None)
    results: list[SearchResult] = retriever.search(question, k=k, user=user)
    retrieved = time.perf_counter()
    threshold = MIN_RETRIEVAL_SCORE if min_score is None else min_score
    timings = {"retrieval": round(retrieved - started, 4)}
    gate_on_chunks = not (hasattr(generator, "extract") and embed is not None)
    if not results or (gate_on_chunks and results[0].score < threshold):
        timings.update(generation=0.0, total=round(time.perf_counter() - started, 4))
        return Answer(IDK, True, [], timings, reason="no passage relevant enough to the question")

    if hasattr(generator, "extract") and embed is not None:
        units, relevance = select_units(question, results, embed)
        if not units or relevance[0] < MIN_SENTENCE_SCORE:
            timings.update(generation=0.0, total=round(time.perf_counter() - started, 4))
            return Answer(IDK, True, [], timings, reason="no passage relevant enough to the question")
        answer, cited = read_extractive(generator, question, units, max_new_tokens, on_token)
    else:
        answer, cited = parse_output(read(generator, question, results, max_new_tokens, on_token), len(results))
    generated = time.perf_counter()
    timings.update(generation=round(generated - retrieved, 4), total=round(generated - started, 4))
    if not answer or normalise(answer) in _ABSTAIN_PHRASES:
        return Answer(IDK, True, [], timings, reason="the passages do not answer the question")
    supporting = [i for i, r in enumerate(results, start=1) if contains_answer(r.text, answer)]
    if not supporting:
        return Answer(IDK, True, [], timings, reason=f"the model's answer {answer!r} is not in the passages")
    chosen = [n for n in cited if n in supporting] or supporting[:2]
    citations = [
        Citation(n=n, source=results[n - 1].source, chunk_id=results[n - 1].chunk_id, score=results[n - 1].score)
        for n in chosen
    ]
    return Answer(answer, False, citations, timings)


def read_extractive(generator, question, units, max_new_tokens, on_token=None) -> tuple[str, list[int]]:
    """Span-constrained decoding over the selected sentences (see reader.py); cites the chunk the span came from."""
    passages = [Passage(n, unit.context, unit.text) for n, unit in enumerate(units, start=1)]
    answer, _confidence = generator.extract(
        extractive_prompt(question, passages), [u.text for u in units], max_new_tokens
    )
    if on_token and answer:
        on_token(answer)
    cited = [units[n].result + 1 for n in range(len(units)) if contains_answer(units[n].text, answer)]
    return answer, list(dict.fromkeys(cited))


def read(generator, question: str, results: list[SearchResult], max_new_tokens: int, on_token=None) -> str:
    passages = [Passage(i, r.source, r.text) for i, r in enumerate(results, start=1)]
    build = _chat_builder(generator) if _wants_chat(generator) else completion_prompt
    budget = min(generator.context_window, 4096) - max_new_tokens - 8
    passages = fit_passages(question, passages, build, generator.count_tokens, budget)
    prompt = build(question, passages)
    pieces = []
    for piece in generator.stream(prompt, max_new_tokens=max_new_tokens, stop=STOP):
        pieces.append(piece)
        if on_token:
            on_token(piece)
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


__all__ = ["answer_question", "parse_output", "read", "UNKNOWN", "MIN_RETRIEVAL_SCORE", "DEFAULT_K"]
