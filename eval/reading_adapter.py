"""A reading adapter for the bundled Gemma, trained on real questions, written as a model folder that every command
takes as ``--generator DIR``. Issue 14's first lever, measured twice and not adopted: docs/reader.md, "The reading
adapter".

    python -m eval.reading_adapter          # DIR = ~/.cache/docrag/models/gemma-3-270m-reading; 21-40 min on 2 cores
    python -m eval.calibrate collect --generator DIR --shard 0/2 & ... --shard 1/2 & wait
    python -m eval.calibrate fit --generator DIR  # the reader's settings for (MiniLM, DIR), in ~/.cache/docrag/reader
    rag eval --qa ../shared/data/squad2/dev-2articles.json --systems rag,oracle --probes none --generator DIR

RAFT with real questions: a LoRA trained for the extractive reader's prompt (no few-shot examples) on SQuAD 2.0
questions of the training pool's learning articles (``eval.reader_data.split_articles``) and on the demo corpus's
train split. The calibration and held-out pool articles, the SQuAD evaluation pair and the demo's dev and test
splits are never seen. Synthetic echo questions taught the earlier ``rag_raft`` adapter that a paraphrase is "not in
the passages" (docs/evaluation.md); real questions paraphrase their sentence, and SQuAD 2.0's unanswerable questions
are adversarial twins written against the same paragraph.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from rag.prompting import UNKNOWN
from rag.reader import split_units
from rag.text import segments

from .lora import Example
from .raft import reading_example, reading_settings, sample_distractors

# Answerable share of the examples from real questions. The pool is about half unanswerable; an adapter trained on
# mostly-"unknown" examples learnt to abstain on almost everything (eval/raft.py), and the reader's learned gate is the
# second line of defence against false answers, so the examples lean towards answering.
REAL_ANSWERABLE_SHARE = 0.6
# The demo corpus's split the adapter also learns from (its dev split stays out: calibration predicts it out of
# fold), and how often each of its questions is shown, each time with other distractors.
DEMO_SPLITS = ("train",)
DEMO_ROUNDS = 2


def question_reading_examples(data: dict, titles: list[str], seed: int = 0, limit: int = 2000) -> list[Example]:
    """Reading examples from real SQuAD 2.0 questions of the articles ``titles``, in the reader's prompt.

    An answerable question is shown the sentence of its paragraph that holds its answer, with up to two other
    sentences of the paragraph; the target is the answer, verbatim. An unanswerable one (SQuAD 2.0's adversarial
    twin, written to look answerable from that paragraph) is shown the sentence holding its "plausible answer" the
    same way; the target is "unknown". Real questions paraphrase their sentence, which the echo questions of
    ``reading_examples`` do not.
    """
    from rag.types import SearchResult

    from .qa import article_filename

    rng = random.Random(seed)
    answerable: list[Example] = []
    unanswerable: list[Example] = []
    for article in data["data"]:
        if article["title"] not in titles:
            continue
        source = article_filename(article["title"])
        for paragraph in article["paragraphs"]:
            text = paragraph["context"]
            result = SearchResult(1, 0.0, source, 0, text, 0, len(text))
            units = [u for u in split_units(result, 0) if not u.text.startswith("|")]
            for qa in paragraph["qas"]:
                impossible = qa.get("is_impossible", False)
                spans = qa.get("plausible_answers" if impossible else "answers") or []
                if not spans:
                    continue
                span = spans[0]["text"].strip()
                holding = [u for u in units if span in u.text]
                if not holding or not _quotable(span, holding[0]):
                    continue  # an answer across sentences, or one the constrained decoder could not produce
                others = [u for u in units if u is not holding[0]]
                shown = [holding[0], *sample_distractors(others, rng)]
                example = reading_example(qa["question"], shown, UNKNOWN if impossible else span, rng)
                (unanswerable if impossible else answerable).append(example)
    rng.shuffle(answerable)
    rng.shuffle(unanswerable)
    wanted = round(limit * REAL_ANSWERABLE_SHARE)
    examples = answerable[:wanted] + unanswerable[: limit - min(wanted, len(answerable))]
    rng.shuffle(examples)
    return examples


def demo_reading_examples(corpus: Path, qa: Path, splits: tuple[str, ...], seed: int = 0) -> list[Example]:
    """Reading examples from the demo corpus's questions of ``splits``, each shown the sentence (or table row) of its
    source document that holds an accepted answer, verbatim, ``DEMO_ROUNDS`` times with other distractors.

    Why: trained on SQuAD alone, the adapter said "unknown" to a third of the demo's answerable train questions,
    whose terse styles ("Count of EV charging points on level -1?") and lists and tables Wikipedia does not have.
    """
    from ingest.loaders import load_file
    from rag.types import SearchResult

    from .qa import load_qa

    rng = random.Random(seed)
    units_of: dict[str, list] = {}
    examples = []
    for item in (q for q in load_qa(qa) if q.split in splits and q.answerable and q.source):
        if item.source not in units_of:
            text = load_file(corpus, item.source).text
            units_of[item.source] = split_units(SearchResult(1, 0.0, item.source, 0, text, 0, len(text)), 0)
        units = units_of[item.source]
        found = [(unit, alias) for unit in units for alias in item.answers if _quotable(alias, unit)]
        if not found:
            continue  # an answer the constrained decoder could not quote from one sentence
        holding, alias = found[0]
        others = [u for u in units if u is not holding]
        for _ in range(DEMO_ROUNDS):
            shown = [holding, *sample_distractors(others, rng)]
            examples.append(reading_example(item.question, shown, alias, rng))
    return examples


def _quotable(answer: str, unit) -> bool:
    """Whether span-constrained decoding could produce ``answer`` from ``unit``: it lies within one segment."""
    return any(answer in piece for piece in segments(unit.text))


def build(pool: Path, out: Path, examples_wanted: int, seed: int, command: str, progress: bool = True) -> dict:
    """Train the adapter on the pool's learning articles and the demo's train split; write the merged model, its
    tokenizer and how it was made (``training.json``) to ``out``."""
    import torch

    from corpora import bundled_corpus
    from rag.generation import TRAINED_TO_READ, load_causal_lm

    from .lora import train_lora
    from .reader_data import load_pool, split_articles

    data = load_pool(pool)
    articles = split_articles(data, seed).learn
    squad = question_reading_examples(data, articles, seed, examples_wanted)
    corpus = bundled_corpus()
    demo = demo_reading_examples(corpus, corpus.parent / "acme-qa.jsonl", DEMO_SPLITS, seed)
    examples = squad + demo
    random.Random(seed).shuffle(examples)
    model, tokenizer = load_causal_lm(None)
    model, stats = train_lora(model, tokenizer, examples, reading_settings(seed), progress)
    # merged into the weights and saved whole (bf16, about 0.5 GB): reading then costs what the base's costs, and
    # the folder loads like any local model; its config tells the reader to show no few-shot examples
    merged = model.merge_and_unload().to(torch.bfloat16)
    setattr(merged.config, TRAINED_TO_READ, True)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    record = {
        "command": command,
        "pool": pool.name,
        "training_articles": articles,
        "demo_splits": list(DEMO_SPLITS),
        "examples": {"squad": len(squad), "demo": len(demo)},
        "unknown_targets": sum(e.target.strip() == UNKNOWN for e in examples),
        "seed": seed,
        "training": {k: v for k, v in stats.items() if k != "history"},
        "data_licence": "SQuAD 2.0 (Rajpurkar et al. 2018), CC BY-SA 4.0; the weights are shared under the same",
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    from ingest.common import cache_dir

    from .calibrate import default_pool

    default_out = cache_dir("models") / "gemma-3-270m-reading"

    parser = argparse.ArgumentParser(prog="python -m eval.reading_adapter", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=Path, default=default_pool(), help="SQuAD 2.0 training pool (.json[.gz]).")
    parser.add_argument("--out", type=Path, default=default_out, help=f"Where to write (default: {default_out}).")
    parser.add_argument("--examples", type=int, default=2000, help="Reading examples (default 2000).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the article split and the sample (default 0).")
    args = parser.parse_args(argv)
    if not args.pool.is_file():
        parser.error(f"--pool {args.pool} does not exist; point it at train-20articles.json.gz")
    if args.examples < 10:
        parser.error(f"--examples {args.examples} is too few to train on; give 10 or more")
    command = " ".join(["python -m eval.reading_adapter", *(sys.argv[1:] if argv is None else argv)])
    record = build(args.pool, args.out, args.examples, args.seed, command)
    print(json.dumps(record["training"], indent=2))
    print(f"Wrote {args.out}; use it as --generator {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
