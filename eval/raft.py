"""A RAFT-style reading adapter: a LoRA trained to read, on examples generated from the indexed corpus itself.

The default extractive reader (rag.reader) shows the model one to three sentences and lets it decode a span of them
or "unknown". The base model reads them with a few-shot prompt; this adapter is trained for that exact prompt,
without the few-shot examples, on question/sentences/answer triples made from the corpus's own sentences:

- answerable: a sentence's date, number or name is turned into a question ("The Skarv was launched on 9 March
  2029." -> "The Skarv was launched when?") and the sentence is shown among distractor sentences; the target is
  the span;
- absent: the same question, shown only the distractor sentences; the target is "unknown";
- swapped: a name or number of the question is replaced by another one of the corpus ("launched in 2031" asked of a
  sentence that says 2029); the sentence is shown; the target is "unknown". These are the near misses a small
  reader answers anyway: another year's budget, another city's rate, SQuAD 2.0's adversarial questions.

No QA data is used, only the documents. What the adapter can output stays a span of the passages the user may read
(decoding is constrained), so training on restricted documents cannot leak them through its answers.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

from rag.answer_types import has_type
from rag.prompting import UNKNOWN, Passage, extractive_query
from rag.reader import Unit, split_units
from rag.text import segments

from .lora import Example, LoraSettings

# One sentence of the question's own, up to two distractors: what the reader shows (rag.reader.MAX_UNITS).
MAX_DISTRACTORS = 2
MIN_WORDS, MAX_WORDS = 6, 40
ROUNDS = 3
# Measured on SQuAD 2.0 (see the README): with half the examples "unknown", a quarter of them "absent", the adapter
# learnt that a question worded unlike its sentence is unanswerable and abstained on 83% of all questions.
SHARES = {"answerable": 0.7, "absent": 0.1, "swapped": 0.2}
# Real questions paraphrase their sentence: the echo question loses this share of its lower-case words, so that
# the adapter does not learn to expect every word of the question in the sentence.
DROP_WORDS = 0.2

_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_DATE = re.compile(
    rf"\b(?:\d{{1,2}} {_MONTH}(?: \d{{4}})?|{_MONTH} \d{{1,2}}(?:, \d{{4}})?|{_MONTH} \d{{4}}|1\d{{3}}|20\d\d)\b"
)
_AMOUNT = re.compile(
    r"(?:(?:NOK|EUR|USD|GBP|SEK|DKK|\$|£|€)\s?)?\b\d[\d.,]*(?:\s(?:million|billion|percent|per cent))?"
)
_NAME = re.compile(r"\b[A-Z][a-z\u00e0-\u024f]+(?:[ -](?:of |de |von |van )?[A-Z][a-z\u00e0-\u024f]+)*")
_LEADING_PREPOSITION = re.compile(r"\b(?:in|on|by|since|from|until|during|of)\s+$", re.I)


def reading_settings(seed: int = 0) -> LoraSettings:
    """One epoch in bf16 autocast where the hardware has it: reading prompts are short (about 120 tokens)."""
    return LoraSettings(epochs=1, seed=seed, max_tokens=224, batch_size=8, learning_rate=3e-4, mixed_precision=True)


def reading_examples(chunks, seed: int = 0, limit: int = 600) -> list[Example]:
    """Answerable, absent and swapped reading examples from the corpus's chunks (see the module docstring)."""
    rng = random.Random(seed)
    units_by_doc: dict[str, list[Unit]] = defaultdict(list)
    for chunk in chunks:
        units_by_doc[chunk.source].extend(u for u in split_units(chunk, 0) if not u.text.startswith("|"))
    pool = [
        (doc, u) for doc, units in units_by_doc.items() for u in units if MIN_WORDS <= len(u.text.split()) <= MAX_WORDS
    ]
    rng.shuffle(pool)
    corpus_terms = _terms(u for _, u in pool)
    doc_terms = {doc: _terms(units) for doc, units in units_by_doc.items()}
    examples: list[Example] = []
    counts = dict.fromkeys(SHARES, 0)
    # A small corpus is read several times, each time about another span of the sentence.
    for doc, unit in [entry for _ in range(ROUNDS) for entry in pool]:
        if len(examples) >= limit:
            break
        target = _pick_target(unit.text, rng)
        if target is None:
            continue
        question = _drop_words(_question(unit.text, target), rng)
        others = [u for u in units_by_doc[doc] if u is not unit and target not in u.text]
        if len(others) < MAX_DISTRACTORS:  # a short document: borrow from anywhere
            others += [u for _, u in rng.sample(pool, min(len(pool), 8)) if u is not unit and target not in u.text]
        distractors = sample_distractors(others, rng)
        kind = _kind_with_room(counts, rng)
        if kind == "swapped":
            # a term of the same document first: "2031" for "2029" is a near miss, another article's name is not
            swapped = _swap_term(question, target, unit.text, doc_terms[doc], rng) or _swap_term(
                question, target, unit.text, corpus_terms, rng
            )
            if swapped is None:
                kind = "answerable"
            else:
                examples.append(reading_example(swapped, [unit, *distractors], UNKNOWN, rng))
        if kind == "absent":
            shown = distractors or rng.sample(others, min(len(others), 1))
            if not shown:
                continue
            examples.append(reading_example(question, shown, UNKNOWN, rng))
        if kind == "answerable":
            examples.append(reading_example(question, [unit, *distractors], target, rng))
        counts[kind] += 1
    return examples


def _kind_with_room(counts: dict[str, int], rng: random.Random) -> str:
    total = sum(counts.values()) + 1
    behind = [k for k, share in SHARES.items() if counts[k] < share * total]
    return rng.choice(behind) if behind else "answerable"


def sample_distractors(others: list[Unit], rng: random.Random) -> list[Unit]:
    """Zero to MAX_DISTRACTORS of ``others``, at random: the other sentences a reading example shows."""
    return rng.sample(others, min(len(others), rng.randint(0, MAX_DISTRACTORS)))


def reading_example(question: str, units: list[Unit], answer: str, rng: random.Random) -> Example:
    """One training example in the extractive reader's own prompt (no few-shot examples): ``units`` in a shuffled
    order, so that the answer's sentence is not always first; the target is ``answer`` (or "unknown")."""
    shown = list(units)
    rng.shuffle(shown)
    passages = [Passage(n, u.context, u.text) for n, u in enumerate(shown, start=1)]
    return Example(extractive_query(question, passages), f" {answer}\n")


def _pick_target(sentence: str, rng: random.Random) -> str | None:
    """A date, amount or name of the sentence that the constrained decoder could produce (inside one segment) and
    that is not the sentence's first word (a question needs something left to ask about)."""
    pieces = segments(sentence)
    matches = [m for pattern in (_DATE, _AMOUNT, _NAME) for m in pattern.finditer(sentence) if m.start() > 0]
    found = [m.group().strip(" ,.") for m in matches]
    found = [t for t in dict.fromkeys(found) if len(t) >= 2 and any(t in piece for piece in pieces)]
    found = [t for t in found if not t.isdigit() or len(t) >= 2]
    return rng.choice(found) if found else None


def _wh(sentence: str, target: str) -> str:
    if _DATE.fullmatch(target):
        return "when"
    if any(ch.isdigit() for ch in target):
        return "how much" if re.search(r"NOK|EUR|USD|GBP|SEK|DKK|[$£€]|million|billion", target) else "how many"
    return "who" if has_type(target, "person") else "what"


def _question(sentence: str, target: str) -> str:
    """The sentence as a question about ``target``: "The Skarv was launched on 9 March 2029." -> "The Skarv was
    launched when?" Echo questions; the reader's job is finding and delimiting the span, which they teach."""
    wh = _wh(sentence, target)
    before, _, after = sentence.partition(target)
    if wh == "when":
        before = _LEADING_PREPOSITION.sub("", before)
    text = f"{before}{wh}{after}".strip().rstrip(".!;:")
    return re.sub(r"\s+", " ", text[:1].upper() + text[1:]) + "?"


def _drop_words(question: str, rng: random.Random) -> str:
    """The question without some of its lower-case words (never the first word, the wh-word or a name/number)."""
    words = question.split()
    kept = [
        w
        for i, w in enumerate(words)
        if i == 0 or not w.islower() or w.rstrip("?") in _WH_WORDS or rng.random() >= DROP_WORDS
    ]
    text = " ".join(kept)
    return text if text.endswith("?") else text + "?"


_WH_WORDS = {"when", "who", "what", "how", "many", "much"}


def _terms(units) -> dict[str, list[str]]:
    """Dates, amounts and names of these sentences, by kind: what a swapped question borrows."""
    terms: dict[str, set[str]] = defaultdict(set)
    for unit in units:
        for name, pattern in (("date", _DATE), ("amount", _AMOUNT), ("name", _NAME)):
            terms[name].update(m.group().strip(" ,.") for m in pattern.finditer(unit.text) if m.start() > 0)
    return {k: sorted(v) for k, v in terms.items()}


def _swap_term(question: str, target: str, sentence: str, terms: dict[str, list[str]], rng) -> str | None:
    """The question with one of its other dates, amounts or names replaced by one the sentence does not contain."""
    for name, pattern in (("date", _DATE), ("amount", _AMOUNT), ("name", _NAME)):
        candidates = [m.group().strip(" ,.") for m in pattern.finditer(question) if m.start() > 0]
        candidates = [c for c in candidates if c not in target and target not in c and len(c) >= 2]
        if not candidates:
            continue
        old = rng.choice(candidates)
        replacements = [t for t in terms.get(name, []) if t not in sentence and t.lower() != old.lower()]
        if replacements:
            return question.replace(old, rng.choice(replacements), 1)
    return None
