"""Word lists the reader knows the language by, read from ``rag/data/*.txt`` (package data, one entry a line).

They hold knowledge of English and of standards (ISO 4217 currency codes, how a model says "I don't know"), never
the names of one corpus. Editing a list changes behaviour without touching code; each file says what it is for.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from pathlib import Path

from .text import normalise

DATA_DIR = Path(__file__).parent / "data"


@cache
def word_list(name: str) -> tuple[str, ...]:
    """The entries of ``rag/data/{name}.txt``: stripped, without blank lines and ``#`` comments, in file order."""
    lines = (DATA_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def currency_codes() -> frozenset[str]:
    return frozenset(word_list("iso4217"))


def is_currency_symbol(ch: str) -> bool:
    """Any Unicode currency symbol ($, £, €, ¥, ₹, ₩, ...): general category Sc."""
    return unicodedata.category(ch) == "Sc"


@cache
def _abstain_phrases() -> tuple[str, ...]:
    return tuple(normalise(p) for p in word_list("abstain_phrases"))


def is_abstention(answer: str) -> bool:
    """An empty answer, one of the ways a model says it does not know ("unknown", "none", "I don't know."), or an
    answer that starts with one ("Unknown - not stated"). The product and the scorer both use it."""
    text = normalise(answer)
    return not text or any(text == p or text.startswith(p + " ") for p in _abstain_phrases())
