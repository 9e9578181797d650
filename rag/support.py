"""The generative reader's support check: is an answer backed by a passage the user may read? Pure functions.

A small base model answers with a span ("NOK 18.4 million"); an instruction-tuned model behind an LLM server often
answers in a sentence ("The 2031 budget is NOK 18.4 million."). Both are supported by a passage when the answer occurs
in it verbatim, or when every content word of the answer does: its names, numbers and codes, and any negation, since
"is not NOK 18.4 million" must not pass on the words of "is NOK 18.4 million". Function words may differ. An answer
that adds one fact the passage lacks (another year, a name) fails, and the reader says "I don't know".
"""

from __future__ import annotations

import re

from .text import STOPWORDS, contains_answer, normalise

# Kept as content: dropping them would let an answer deny what the passage says.
NEGATIONS = frozenset({"not", "no", "never", "none", "nor", "neither", "nothing", "nobody", "without", "cannot"})
_CONTRACTED_NOT = re.compile(r"n['\u2019]t\b", re.IGNORECASE)  # "isn't" -> "is not", before punctuation goes


def content_words(text: str) -> list[str]:
    """The words of ``text`` that a supporting passage must contain (normalised as SQuAD's metric does)."""
    words = normalise(_CONTRACTED_NOT.sub(" not", text)).split()
    return [w for w in words if w not in STOPWORDS or w in NEGATIONS]


def supports(passage: str, answer: str) -> bool:
    """True when ``answer`` occurs in ``passage`` or every content word of it does."""
    if contains_answer(passage, answer):
        return True
    needed = content_words(answer)
    return bool(needed) and set(needed) <= set(content_words(passage))
