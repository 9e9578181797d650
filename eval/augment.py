"""Training data for the fine-tuned baselines, made from the documents alone (never from test questions).

A fact seen once in one wording is memorised but hardly retrievable by a question (Allen-Zhu and Li 2023); several
restatements per fact, QA pairs mixed with the documents and even coverage make it retrievable (Ovadia et al. 2023,
Jiang et al. 2024, Mecklenburg et al. 2024). A *fact* here is a sentence of a document with one date, amount or name
in it (the answer). Each fact is restated as:

- the document itself, every epoch in another form: the original chunks first, then the document's sentences
  shuffled and recombined into new passages (``document_views``);
- a template question by answer type ("The Skarv was launched when?" -> "9 March 2029", see eval.raft);
- for a bounded number of facts, the base model's own paraphrase of that question (a few-shot prompt).

Half of the model's paraphrases are trained; the other half, for other facts whose template question is trained,
form the held-out paraphrase set that stops training. Cloze questions over the documents' sentences
(``train_fact_recall``) are never trained.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from rag.reader import split_units
from rag.text import STOPWORDS

from .lora import Example, closed_book_prompt, cloze_pairs
from .qa import QAItem
from .raft import MAX_WORDS, MIN_WORDS, _pick_target, _question

PASSAGE_WORDS = 150  # a recombined passage: about one chunk
PARAPHRASE_SHOTS = (
    "Rewrite each question in other words, keeping its meaning.\n\n"
    "Question: The museum was opened when?\nRewritten: When did the museum open?\n\n"
    "Question: The bridge is how many metres long?\nRewritten: How long is the bridge, in metres?\n\n"
    "Question: Who leads the Lisbon office?\nRewritten: Which person is in charge of the office in Lisbon?\n\n"
)


@dataclass(frozen=True)
class Fact:
    source: str
    sentence: str
    answer: str
    question: str  # the template question


@dataclass
class Augmented:
    """What a fine-tuned baseline trains on, and what measures what it learnt."""

    examples: list[Example]  # QA pairs and paraphrases, trained every epoch
    document_views: list[list[Example]]  # the documents, one view per epoch (cycled): original, then shuffled
    train_pairs: list[tuple[str, str]]  # QA pairs trained on: the QA set's train split (if any), then templates
    qa_train_pairs: list[tuple[str, str]]  # the QA set's train split only
    heldout: list[tuple[str, str]]  # paraphrases of trained facts' questions, never trained
    cloze: list[tuple[str, str]]  # fill-in-the-blank questions over the training documents, never trained
    stats: dict = field(default_factory=dict)


def facts_from_chunks(chunks, seed: int = 0) -> list[Fact]:
    """One fact per sentence that holds a date, amount or name (table rows are left to the documents)."""
    rng = random.Random(seed)
    facts, seen = [], set()
    for chunk in chunks:
        for unit in split_units(chunk, 0):
            text = unit.text.lstrip("-*\u2022 ")  # a list item's marker is no part of its sentence
            if text.startswith("|") or not MIN_WORDS <= len(text.split()) <= MAX_WORDS or text in seen:
                continue
            answer = _pick_target(text, rng)
            if answer and answer.lower() not in STOPWORDS:
                seen.add(text)
                facts.append(Fact(chunk.source, text, answer, _question(text, answer)))
    return facts


def document_views(chunks, views: int, seed: int = 0) -> list[list[Example]]:
    """The documents as plain text: the original chunks, then ``views - 1`` recombinations in which each document's
    sentences are shuffled and regrouped into passages of about PASSAGE_WORDS words."""
    rng = random.Random(seed)
    chunks = list(chunks)
    by_doc: dict[str, list[str]] = defaultdict(list)
    for chunk in chunks:
        by_doc[chunk.source].extend(u.text for u in split_units(chunk, 0))
    result = [[Example("", c.text) for c in chunks]]
    for _ in range(views - 1):
        view = []
        for source, sentences in by_doc.items():
            order = list(sentences)
            rng.shuffle(order)
            passage: list[str] = []
            for sentence in order:
                passage.append(sentence)
                if sum(len(s.split()) for s in passage) >= PASSAGE_WORDS:
                    view.append(Example("", f"{source}\n" + "\n".join(passage)))
                    passage = []
            if passage:
                view.append(Example("", f"{source}\n" + "\n".join(passage)))
        result.append(view)
    return result


def paraphrases_of(generator, questions: list[str]) -> list[str | None]:
    """The base model's rewording of each question (decoded together in batches); None where it is empty or just
    the question again."""
    prompts = [f"Question: {question}\nRewritten:" for question in questions]
    replies = generator.generate(prompts, 32, ("\n",), prefix=PARAPHRASE_SHOTS)
    return [_kept(reply.strip(), question) for reply, question in zip(replies, questions)]


def _kept(reply: str, question: str) -> str | None:
    if not reply.endswith("?") or _words(reply) == _words(question) or len(reply.split()) < 3:
        return None
    return reply


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def augment(
    chunks,
    qa_train: list[QAItem],
    generator=None,
    *,
    seed: int = 0,
    paraphrases: int = 40,
    views: int = 3,
    replay: list[str] | None = None,
    cloze_limit: int = 60,
) -> Augmented:
    """Every restatement of every fact (see the module docstring). ``generator`` writes up to ``paraphrases`` model
    paraphrases (None: the held-out set falls back to 40 facts' template questions prefixed with their document's
    path, a weaker paraphrase); ``replay`` is generic text trained alongside against forgetting."""
    started = time.perf_counter()
    chunks = list(chunks)
    rng = random.Random(seed)
    facts = facts_from_chunks(chunks, seed)
    qa_pairs = [(q.question, q.answers[0]) for q in qa_train if q.answers]
    template_pairs = [(f.question, f.answer) for f in facts]
    examples = [_qa(q, a) for q, a in qa_pairs + template_pairs]
    # Paraphrases for facts spread evenly over the documents: round-robin over sources, a random fact of each.
    spread = _round_robin(facts, rng)[: 2 * paraphrases if generator is not None else 0]
    reworded = paraphrases_of(generator, [fact.question for fact in spread]) if spread else []
    written = [(f, text) for f, text in zip(spread, reworded) if text and f.answer.lower() not in text.lower()]
    trained, held = written[::2], written[1::2]
    examples += [_qa(text, fact.answer) for fact, text in trained]
    heldout = [(text, fact.answer) for fact, text in held]
    if not heldout:  # no generator: a weaker paraphrase, the template question of the fact's document, retitled
        heldout = [(f"In {f.source}: {f.question}", f.answer) for f in rng.sample(facts, min(len(facts), 40))]
    examples += [Example("", text) for text in replay or []]
    views_list = document_views(chunks, views, seed)
    generation_seconds = time.perf_counter() - started
    per_fact = _restatements(facts, qa_pairs, trained, views)
    return Augmented(
        examples=examples,
        document_views=views_list,
        train_pairs=qa_pairs + template_pairs,
        qa_train_pairs=qa_pairs,
        heldout=heldout,
        cloze=cloze_pairs([c.text for c in chunks], seed, cloze_limit),
        stats={
            "facts": len(facts),
            "qa_train_pairs": len(qa_pairs),
            "template_questions": len(template_pairs),
            "model_paraphrases_written": len(written),
            "model_paraphrases_trained": len(trained),
            "heldout_paraphrases": len(heldout),
            "heldout_kind": "model paraphrases" if held else "retitled template questions",
            "document_views": len(views_list),
            "replay_passages": len(replay or []),
            "restatements_per_fact": {
                "min": min(per_fact, default=0),
                "median": statistics.median(per_fact) if per_fact else 0,
                "max": max(per_fact, default=0),
            },
            "generation_seconds": round(generation_seconds, 1),
        },
    )


def _restatements(facts: list[Fact], qa_pairs, trained, views: int) -> list[int]:
    """How many times each fact is stated per cycle of document views: once in each view, once as a template
    question, plus a train-split pair and a model paraphrase when it has them."""
    by_answer = Counter(a.lower() for _, a in qa_pairs)
    paraphrased = Counter(f.sentence for f, _ in trained)
    return [views + 1 + min(1, by_answer[f.answer.lower()]) + paraphrased[f.sentence] for f in facts]


def _round_robin(facts: list[Fact], rng: random.Random) -> list[Fact]:
    by_source: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        by_source[fact.source].append(fact)
    for group in by_source.values():
        rng.shuffle(group)
    order = []
    for depth in range(max((len(g) for g in by_source.values()), default=0)):
        order += [group[depth] for group in by_source.values() if depth < len(group)]
    return order


def _qa(question: str, answer: str) -> Example:
    return Example(closed_book_prompt(question), f" {answer}\n")
