"""The systems under comparison. All share one base model, one answer extraction and greedy decoding."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rag.answer import IDK, answer_question
from rag.generation import HFGenerator
from rag.reader import ExtractiveReader

from .lora import closed_book_prompt
from .metrics import is_abstention

SYSTEMS = (
    "closed_book",
    "lora",
    "full_ft",
    "rag",
    "rag_lora",
    "rag_full_ft",
    "rag_raft",
    "long_context",
    "oracle",
)

# The closed-book few-shot prompt: general knowledge only, and an explicit way to say "unknown", so a closed-book
# model gets the same chance to abstain as the RAG reader.
_CLOSED_BOOK_SHOTS = (
    'Answer with a short phrase, or "unknown" if you do not know.\n\n'
    "Question: What is the capital of Japan?\nAnswer: Tokyo\n\n"
    "Question: What was the name of the dog of the mayor of Vestby in 1932?\nAnswer: unknown\n\n"
    "Question: How many legs does a spider have?\nAnswer: eight\n\n"
)

# Set on a fine-tune's config by the evaluator: it learnt the bare "Question: ...\nAnswer:" format from its training
# pairs, so it is asked in that format. The few-shot examples teach the base model the format; in front of a
# fine-tune they pull it off its training distribution (the full demo run's LoRA answered 2 of 40 of its own training
# questions behind them and 10 of 40 without; docs/evaluation.md).
FINE_TUNED_ON_QA = "docrag_fine_tuned_on_qa"
LATENCY_SAMPLE = 16  # questions a batched (closed-book) system is asked one at a time, to time it as a user waits


@dataclass
class Reply:
    answer: str
    abstained: bool
    sources: list[str]
    seconds: float


def closed_book(generator: HFGenerator, question: str, max_new_tokens: int = 24) -> Reply:
    """Ask without documents: the base model behind the few-shot examples, a fine-tune in its training format."""
    return ask_after(generator, _shots(generator), question, max_new_tokens)


def closed_book_all(generator: HFGenerator, questions: list[str], max_new_tokens: int = 24) -> list[Reply]:
    """``closed_book`` for many questions, decoded in batches (several times faster on a CPU)."""
    return ask_all_after(generator, _shots(generator), questions, max_new_tokens)


def ask_after(generator: HFGenerator, prefix: str, question: str, max_new_tokens: int = 24) -> Reply:
    """The question in the closed-book format after a fixed ``prefix`` (few-shot examples, documents), timed alone."""
    started = time.perf_counter()
    text = generator.generate([closed_book_prompt(question)], max_new_tokens, ("\n",), prefix=prefix)[0]
    return _reply(text, time.perf_counter() - started)


def ask_all_after(generator: HFGenerator, prefix: str, questions: list[str], max_new_tokens: int = 24) -> list[Reply]:
    """``ask_after`` for many questions, decoded in batches. Each reply's seconds are the batch's shared out, not what
    the question takes asked alone: time that with ``ask_after``."""
    started = time.perf_counter()
    prompts = [closed_book_prompt(q) for q in questions]
    texts = generator.generate(prompts, max_new_tokens, ("\n",), prefix=prefix)
    share = (time.perf_counter() - started) / max(1, len(questions))
    return [_reply(text, share) for text in texts]


def _shots(generator: HFGenerator) -> str:
    config = getattr(getattr(generator, "model", None), "config", None)  # an LLM server's model has none here
    fine_tuned = bool(getattr(config, FINE_TUNED_ON_QA, False))
    # the few-shot examples are a fixed prefix: their KV cache is computed once per generator
    return "" if fine_tuned else _CLOSED_BOOK_SHOTS


def _reply(text: str, seconds: float) -> Reply:
    text = text.strip()
    abstained = is_abstention(text)
    return Reply(IDK if abstained else text, abstained, [], seconds)


def with_retrieval(generator: HFGenerator, retriever, question: str, user: str | None, reader=None) -> Reply:
    answer = answer_question(retriever, generator, question, user=user, reader=reader)
    return Reply(answer.answer, answer.abstained, [c.source for c in answer.citations], answer.timings["total"])


class OracleRetriever:
    """Retrieval restricted to the gold source document: separates reading errors from retrieval errors."""

    def __init__(self, retriever) -> None:
        self.retriever = retriever
        self.embedder = retriever.embedder
        self.gold: str | None = None

    def search(self, query: str, k: int = 5, user: str | None = None):
        if self.gold is None:
            return self.retriever.search(query, k=k, user=user)
        index = self.retriever.index
        ids = np.asarray(sorted(c.id for c in index.catalog.iter_chunks() if c.source == self.gold), dtype=np.int64)
        from rag.permissions import filtered_search

        hits = filtered_search(index.vectors, self.retriever.embed_query(query), k, ids)
        allowed = self.retriever.permitted_ids(user)
        if allowed is not None:  # the oracle still respects permissions
            hits = [h for h in hits if h[0] in set(allowed.tolist())]
        records = index.catalog.chunks_by_id(i for i, _ in hits)
        from rag.types import SearchResult

        return [SearchResult.from_record(n, s, records[i]) for n, (i, s) in enumerate(hits, start=1)]


def raft_reader(generator: HFGenerator, retriever):
    """The extractive reader for a generator with a RAFT reading adapter (``trained_to_read``: no few-shot
    examples), with the hand-set ``ReaderConfig()``: no settings are calibrated for an adapter trained per run."""
    return ExtractiveReader(generator, retriever.embedder.embed)


def recall_at_k(retriever, question: str, source: str | None, user: str | None, k: int) -> float | None:
    if source is None:
        return None
    return float(any(r.source == source for r in retriever.search(question, k=k, user=user)))
