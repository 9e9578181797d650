"""Extractive reading for small models: pick the best sentences first, then decode a span of them.

A 270M-parameter model reads four 200-token passages poorly: it drifts to the wrong number or paraphrases. Two
levers fix most of that (measured on the demo QA set, see the README):

1. Sentence selection. The retrieved chunks are cut into sentences and table rows, and only the few that best
   match the question (embedding cosine plus a word-overlap bonus) are shown, each with its document and heading
   as context. Shorter prompts are also faster.
2. Constrained decoding. The answer may only be a span of the shown sentences (a token trie over them), or
   "unknown". The model chooses which span; it cannot invent one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .text import normalise
from .types import SearchResult

MAX_UNITS = 2
LEXICAL_WEIGHT = 0.4
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_TABLE_RULE = re.compile(r"^\|?[\s:|-]+\|?$")
_STOPWORDS = set(
    "a an the of in on at to for by with from and or is are was were be been what which who whom whose when where "
    "why how many much does do did this that these those it its as per into about than then there their our your "
    "has have had can could should would will shall may must not no yes".split()
)


@dataclass(frozen=True)
class Unit:
    """A sentence or table row of a retrieved chunk: what the reader sees and may quote."""

    text: str  # quotable text, verbatim from the chunk
    context: str  # document title, heading and table header: shown, not quotable
    result: int  # index into the retrieval results (for citations)


def split_units(result: SearchResult, index: int) -> list[Unit]:
    title = Path(result.source).stem.replace("-", " ").replace("_", " ")
    context = f"{title} > {result.heading}" if getattr(result, "heading", "") else title
    units, header = [], ""
    lines = result.text.split("\n")
    for number, raw in enumerate(lines):
        line = raw.strip()
        if not line or _TABLE_RULE.match(line):
            continue
        if line.startswith("|"):
            following = lines[number + 1].strip() if number + 1 < len(lines) else ""
            if _TABLE_RULE.match(following) and following:
                header = line  # a header row labels the rows under it
                continue
            units.append(Unit(line, f"{context} {header}".strip(), index))
            continue
        header = ""
        for sentence in _SENTENCE_END.split(line):
            sentence = sentence.strip().lstrip("#").strip()
            if len(sentence) >= 3:
                units.append(Unit(sentence, context, index))
    return units


def content_words(text: str) -> set[str]:
    return {w for w in normalise(text).split() if w not in _STOPWORDS}


def select_units(
    question: str, results: list[SearchResult], embed, max_units: int = MAX_UNITS
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
    relevance = cosine + LEXICAL_WEIGHT * lexical
    order = np.argsort(-relevance, kind="stable")[:max_units]
    return [units[i] for i in order], [float(relevance[i]) for i in order]
