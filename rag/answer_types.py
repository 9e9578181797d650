"""What kind of answer a question wants, and whether a piece of text is one. Pure functions over text.

The reader offers the model only spans of the wanted kind: a "when" question gets dates, a budget question amounts
of money, a "how many" question numbers that are not dates, a "who" question names that are not organisations, and
a question for a contract number, code or password gets identifiers ("SL-4471", "P-22", "5518"). For money,
numbers and identifiers a passage without such a span does not answer the question at all (``STRICT``).
"""

from __future__ import annotations

import re

from .lexicon import currency_codes, is_currency_symbol, word_list
from .text import YEAR, normalise

_NUMBER_Q = re.compile(
    r"\b(how (many|much|long|often|large|big|far|old|high|deep)|what (percentage|share|amount|price|cost|margin)|"
    r"budget|price|cost|revenue|per diem|allowance|worth|value|salary|extension|length)\b",
    re.I,
)
# Money questions: answered by an amount ("NOK 12.5 million", "$40", "3 million"), never by "6 metres"
_MONEY_Q = re.compile(r"\b(budget|price|cost|costs|revenue|per diem|allowance|worth|salary|fee|fees)\b", re.I)


def _money_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """An amount of money in any currency: an ISO 4217 code (upper case: "ALL 40" is lek, "all 40" is not) or a
    Unicode currency symbol (category Sc, matched as "$" after ``_symbols_as_dollar``) next to a number ("CAD 40",
    "40 CAD", "$40", "₹1,200", "¥ 500"); or a number with a currency's name ("40 dollars") or a scale word."""
    codes = "|".join(sorted(currency_codes()))
    words = "|".join(word_list("currency_words"))
    coded = re.compile(rf"(?<![A-Za-z])(?:{codes})\s?\d|\d\s?(?:{codes})(?![A-Za-z])|\$\s?\d|\d\s?\$")
    named = re.compile(rf"\d\s?(?:{words}|million|billion|thousand|trillion)\b", re.I)
    return coded, named


_MONEY = _money_patterns()


def _symbols_as_dollar(text: str) -> str:
    return "".join("$" if is_currency_symbol(ch) else ch for ch in text)


def is_money(text: str) -> bool:
    coded, named = _MONEY
    return bool(coded.search(_symbols_as_dollar(text)) or named.search(text))


_DATE_Q = re.compile(r"\b(when|what (date|year|day|month)|which (year|date|day|month|weeks?))\b", re.I)
_PERSON_Q = re.compile(
    r"^\s*(who|whom|name)\b|\b(which|what)(?: \w+)? (person|people|engineer|manager|employee|salesperson|director|"
    r"officer|founder|author|writer|scientist|president|king|queen|leader|player|member|architect|composer)\b",
    re.I,
)
_MONTHS = "january february march april may june july august september october november december"
_DATE = re.compile(
    YEAR + r"|\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|" + "|".join(_MONTHS.split()) + r")\b"
    r"|\d{1,2}:\d\d",
    re.I,
)
_NAME_WORD = r"[A-Z][a-z\u00e0-\u024f]+(?:-[A-Z][a-z]+)?"
_PERSON = re.compile(rf"\b{_NAME_WORD}(?: {_NAME_WORD})+")  # a run of capitalised words: "Per Aasen", "Ragna Halvorsen"


# Words that make a run of capitalised words an organisation or a place, not a person ("Northfield County Council")
_NOT_A_PERSON = frozenset(word_list("organisation_words"))


# A question for an identifier: "What is the contract number with ...?", "Which code opens ...?", "What is the
# Wi-Fi password for guests?"; not "What is the maximum number of cylinders?" (a count) or "the password length".
_IDENTIFIER_Q = re.compile(
    r"\b(contract|policy|phone|telephone|fax|serial|account|invoice|order|registration|reference|ticket|licen[cs]e|"
    r"permit|key|door|access|project|agreement|wi-?fi|guest)\s+(number|code|password|pin)\b"
    r"|^\s*(what|which)\s+(number|code|password|pin)\b|\b(password|pin)\b(?=\s*(\?|$|for\b|of\b|to\b))",
    re.I,
)
# An identifier: a code with letters and digits ("SL-4471", "P-22", "B2"), or a run of 4+ digits ("4417") that
# is not a year
_IDENTIFIER = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?![\w-])|\b\d{4,}\b")


def expected_type(question: str) -> str | None:
    """What kind of answer the question wants: "date", "money", "identifier", "number", "person" or None."""
    if _DATE_Q.search(question):
        return "date"
    if _MONEY_Q.search(question):
        return "money"
    if _IDENTIFIER_Q.search(question):
        return "identifier"
    if _NUMBER_Q.search(question):
        return "number"
    if _PERSON_Q.search(question):
        return "person"
    return None


_MONTH = "(?:" + "|".join(_MONTHS.split()) + ")"
# Dates and years, no answer to "how much": "30 June 2031", "June 30, 2031", "March 2031", "1998"
_DATE_EXPRESSION = re.compile(
    rf"\b\d{{1,2}}\.? {_MONTH}(?: \d{{4}})?\b|\b{_MONTH} \d{{1,2}}(?:, \d{{4}})?\b"
    rf"|\b{_MONTH} \d{{4}}\b|" + YEAR,
    re.I,
)


_NUMBER_WORDS = re.compile(
    r"\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|hundred|"
    r"thousand|million|billion|dozen|half|twice|once)\b",
    re.I,
)


def has_type(text: str, kind: str) -> bool:
    if kind == "date":
        return bool(_DATE.search(text))
    if kind == "money":
        return is_money(text)
    if kind == "identifier":
        return bool(_IDENTIFIER.search(_DATE_EXPRESSION.sub(" ", text)))
    if kind == "number":
        undated = _DATE_EXPRESSION.sub(" ", text)
        return any(ch.isdigit() for ch in undated) or bool(_NUMBER_WORDS.search(undated))
    return any(not (set(name.lower().split()) & _NOT_A_PERSON) for name in _PERSON.findall(text))


def answers_type(piece: str, kind: str | None, question: str) -> bool:
    """``piece`` has the wanted type through something the question does not already say: "What is the 2031
    budget?" is not answered by "The 2031 budget was approved by", nor "Who leads the Brennvik office?" by
    "Brennvik Office"."""
    if not kind or not has_type(piece, kind):
        return False
    asked = set(normalise(question).split())
    asked |= {word[:-1] for word in asked if word.endswith("s")}  # "Authority's" -> "authoritys" -> "authority"
    return has_type(" ".join(word for word in piece.split() if normalise(word) not in asked), kind)


# Kinds for which a passage with no span of the kind cannot answer: "What is the 2031 budget?" over sentences that
# give no amount, "How many interns ...?" over sentences without a number. Dates and people stay lenient: a date
# question can be answered by "weeks 29 and 30", a "who" question by a company ("Who audits the accounts?").
STRICT = frozenset({"money", "number", "identifier"})
