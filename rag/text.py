"""Answer text normalisation (SQuAD style), the grounding check, the segments of a sentence an answer may come
from, and where a generation's stop sequence starts. Pure functions; eval's metrics, the reader's gates and the
generators reuse them."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

# Function words: not content, never key terms (the reader's word-overlap and coverage signals)
STOPWORDS = frozenset(
    "a an the of in on at to for by with from and or is are was were be been what which who whom whose when where "
    "why how many much does do did this that these those it its as per into about than then there their our your "
    "has have had can could should would will shall may must not no yes".split()
)
# A year, 1000-2099: the one pattern the reader's checks share ("1066", "2031"; "911" is read as a number)
YEAR = r"\b(?:1\d|20)\d\d\b"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_DELETE = set(string.punctuation) | {"\u2018", "\u2019"}  # as SQuAD: "12,500" -> "12500", "don't" -> "dont"
_SPACE = {"\u201c", "\u201d", "\u2013", "\u2014", "\u2026", "\u00a0"}  # dashes and quotes separate words


def normalise(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD's normalize_answer, Unicode-aware)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if ch in _SPACE else "" if ch in _DELETE else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def word_f1(answer: str, reference: str) -> float:
    """SQuAD's word-overlap F1 between two normalised strings (0 when they share no word)."""
    said, wanted = normalise(answer).split(), normalise(reference).split()
    common = sum((Counter(said) & Counter(wanted)).values())
    if not common:
        return 0.0
    precision, recall = common / len(said), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def contains_answer(passage: str, answer: str) -> bool:
    """True when the normalised answer occurs in the normalised passage on word boundaries."""
    needle = normalise(answer)
    if not needle:
        return False
    return f" {needle} " in f" {normalise(passage)} "


_SEGMENT_BREAK = re.compile(r"\s*(?:\||;|:\s|,\s|\(|\)|\s[\u2013\u2014-]\s|\.\s|\.$)\s*")


def segments(text: str) -> list[str]:
    """The pieces of a unit an answer may come from: split at table cells, clause punctuation and brackets, never
    inside a number ("12,500", "3.50"). A span ends where its segment ends, so a small model cannot ramble on."""
    return [piece.strip() for piece in _SEGMENT_BREAK.split(text) if piece and piece.strip()]


def first_stop(text: str, stop: Sequence[str]) -> int | None:
    """Where the earliest of the stop sequences starts in ``text`` (None: none occurs); every generator cuts there."""
    positions = [text.find(s) for s in stop if s and s in text]
    return min(positions) if positions else None
