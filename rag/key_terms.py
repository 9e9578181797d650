"""What a question names, and whether a passage names the same thing. Pure functions over text.

A small reader answers a near-miss question as readily as a real one: asked for the per diem in Trondheim, it reads
off Oslo's row; asked for the 2032 budget, the 2031 one. These checks catch that before the model is asked:

- ``missing_terms``: a name, number, code or quarter of the question that no retrieved passage mentions. Nothing
  the user may read answers "What is the unit price of the TideSense T8?" if no passage says "T8".
- ``uncovered_terms``: the same check against one sentence in its context (heading, previous sentence, document
  path and the document's opening). "Rail is preferred between Brennvik and Trondheim" puts Trondheim in the
  travel policy, but not in its table of per diems.
- ``conflicts``: the question asks for one year, quarter, weekday, product code or role and the sentence names
  another one instead ("a dividend of NOK 3.10 per share for 2030" does not answer a question about 2031, "Head of
  sales: Hana Lindqvist" not one about the head of marketing).
"""

from __future__ import annotations

import re
import unicodedata

from .text import STOPWORDS, YEAR, normalise

_NAME = re.compile(r"\b[A-Z][a-z\u00e0-\u024f][\w\u00c0-\u024f]{2,}")  # "Copenhagen", not "HTI", "Q1" or "EV"
# A run of two or more capitalised words is a name however short its words: "Ana Li", "Bo Yu"
_NAME_RUN = re.compile(r"\b[A-Z][a-z\u00e0-\u024f]+(?: [A-Z][a-z\u00e0-\u024f]+)+\b")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?:st|nd|rd|th)?")  # "10th" whole: the text says "10th century", not "10"
# A code: letters and digits in one word, parts joined by hyphens ("T8", "W2", "KESTREL-7", "INC-2031-017",
# "NO-345871"). Codes must match exactly: "KESTREL-8" is not "KESTREL-7", though every other word agrees.
_CODE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[^\W\d_])[^\W_]+(?:-[^\W_]+)*(?![\w-])")
_ORDINAL = re.compile(r"\d+(?:st|nd|rd|th)|[qQ][1-4]", re.I)  # "10th" is a number, "Q2" a quarter: not codes
_QUARTER = re.compile(r"\b(first|second|third|fourth|1st|2nd|3rd|4th)[\s-]+quarter\b|\bq([1-4])\b", re.I)
_QUARTER_NUMBER = {"first": 1, "second": 2, "third": 3, "fourth": 4, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4}
_YEAR = re.compile(YEAR)
_WEEKDAY = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?\b", re.I)
# A role and what it is for: "head of marketing", "director of sales", "product manager", "senior engineer". Asked
# for the head of marketing, "Head of sales: Hana Lindqvist" names another head. Acronyms ("head of HR") are not
# compared: the text may spell them out ("head of People and culture").
_ROLE_OF = re.compile(r"\b(head|director|chief|leader)\s+of\s+(?:the\s+)?([A-Za-z][\w-]*)", re.I)
_ROLE_AFTER = re.compile(r"\b([A-Za-z][\w-]*)\s+(manager|director|engineer|technician|controller|officer)\b", re.I)


def key_terms(question: str) -> list[str]:
    """Names and numbers of the question: capitalised words of 4+ letters after the first word (acronyms are
    skipped: they are often spelled out in the text), runs of capitalised words of any length ("Ana Li") and
    numbers of 2+ digits ("2029", the 120 of "120-unit")."""
    words = question.split()
    rest = " ".join(words[1:]) if words else ""
    runs = list(_NAME_RUN.finditer(rest))
    inside = {i for run in runs for i in range(run.start(), run.end())}
    names = [(m.start(), m.group()) for m in _NAME.finditer(rest) if m.start() not in inside]
    terms = [normalise(name) for _, name in sorted(names + [(run.start(), run.group()) for run in runs])]
    unquartered = _QUARTER.sub(" ", question)  # "2nd-quarter" is the quarter Q2 (see uncovered_terms), not "2nd"
    terms += [normalise(t) for t in _NUMBER.findall(unquartered) if len(t) >= 2]
    return [t for t in dict.fromkeys(terms) if t and t not in STOPWORDS]


def _is_code(word: str) -> bool:
    """Not an ordinal or a quarter dressed as one: "10th", "Q2", "2nd-quarter" are no product codes."""
    return not all(_ORDINAL.fullmatch(part) for part in word.split("-") if any(ch.isdigit() for ch in part))


def codes(text: str) -> set[str]:
    """The codes ``text`` names, lower case without hyphens, each with its leading parts: "T7-00120" names
    "t700120" and the model "t7" (serial numbers start with the model)."""
    found = set()
    for code in _CODE.findall(text):
        if not _is_code(code):
            continue
        parts = code.lower().split("-")
        for end in range(1, len(parts) + 1):
            head = "".join(parts[:end])
            if any(ch.isdigit() for ch in head) and any(ch.isalpha() for ch in head):
                found.add(head)
    return found


def _question_codes(question: str) -> list[str]:
    return [code for code in _CODE.findall(question) if _is_code(code)]


def quarters(text: str) -> set[int]:
    """The quarters ``text`` names: "second quarter", "2nd-quarter" and "Q2" are all 2."""
    return {_QUARTER_NUMBER[m.group(1).lower()] if m.group(1) else int(m.group(2)) for m in _QUARTER.finditer(text)}


def fold(text: str) -> str:
    """Accents off ("Hervé" ~ "Herve"), for matching a question's words against the passages' words."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def uncovered_words(terms: list[str], text: str) -> list[str]:
    """The normalised ``terms`` that ``text`` does not mention. Hyphenated names count both whole and by part
    ("Saint-Clair-sur-Epte" mentions "Clair"); a shared 5-letter prefix counts ("Halvorsen's" ~ "halvorsen")."""
    seen = set(fold(normalise(text)).split()) | set(fold(normalise(text.replace("-", " "))).split())
    prefixes = {w[:5] for w in seen if len(w) >= 5}
    return [t for t in terms if not all(w in seen or (len(w) >= 5 and w[:5] in prefixes) for w in fold(t).split())]


def uncovered_terms(question: str, text: str) -> list[str]:
    """The names, numbers, codes and quarters of ``question`` that ``text`` does not mention."""
    missing = uncovered_words(key_terms(question), text)
    named = codes(text)
    missing += [code for code in _question_codes(question) if code.lower().replace("-", "") not in named]
    missing += [f"Q{q}" for q in sorted(quarters(question) - quarters(text))]
    return list(dict.fromkeys(missing))


def missing_terms(question: str, results) -> list[str]:
    """Key terms of the question that no retrieved passage mentions (in its text, source path or heading).

    "What is the per diem for Copenhagen?" over a travel policy without Copenhagen: the passages cannot answer it,
    however relevant they look."""
    text = " ".join(f"{r.text} {r.source.replace('/', ' ')} {getattr(r, 'heading', '')}" for r in results)
    return uncovered_terms(question, text)


def _roles(text: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    pairs = _ROLE_OF.findall(text) + [(role, what) for what, role in _ROLE_AFTER.findall(text)]
    for role, what in pairs:
        if what.isupper() or what.lower() in STOPWORDS:
            continue
        found.setdefault(f"role:{role.lower()}", set()).add(what.lower())
    return found


def _qualifiers(text: str) -> dict[str, set[str]]:
    return {
        "year": set(_YEAR.findall(text)),
        "quarter": {f"Q{q}" for q in quarters(text)},
        "weekday": {day.lower() for day in _WEEKDAY.findall(text)},
        "code": codes(text),
        **_roles(text),
    }


def conflicts(question: str, text: str) -> list[str]:
    """What ``text`` (a sentence with its heading) says in place of the question's year, quarter, weekday or code:
    "2030, not 2031" when the question asks about 2031 and the sentence names 2030 but not 2031. A sentence that
    names no year at all does not conflict on years (the check for that is ``uncovered_terms``)."""
    asked, said = _qualifiers(question), _qualifiers(text)
    asked["code"] = {code.lower().replace("-", "") for code in _question_codes(question)}
    found = []
    for kind, values in asked.items():
        other = said.get(kind, set())
        if values and other and not values & other:
            found.append(f"{', '.join(sorted(other))}, not {', '.join(sorted(values))}")
    return found
