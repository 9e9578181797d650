"""``rag eval``: closed-book, LoRA and full fine-tuning (alone and with retrieval), RAG, RAG+RAFT, long context and an
oracle on one QA set, plus what each fine-tune learnt and three probes.

The same base model, the same questions, the same answer scoring and greedy decoding for every system.
"""

from __future__ import annotations

import hashlib
import random
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ingest.catalog import FORMAT_VERSION
from ingest.common import UsageError, cache_dir

from . import long_context, probes
from .ask_eval import asking_user
from .augment import augment
from .finetune import trained_model
from .lora import trained_adapter
from .metrics import score, summarise
from .qa import QAItem, is_squad, load_qa, squad_to_corpus
from .raft import reading_examples, reading_settings
from .systems import (
    FINE_TUNED_ON_QA,
    LATENCY_SAMPLE,
    SYSTEMS,
    OracleRetriever,
    closed_book,
    closed_book_all,
    raft_reader,
    recall_at_k,
    with_retrieval,
)
from .variants import VARIANTS, learned, replay_passages, settings_for, tune_lora

QUICK_QUESTIONS = 40
# Every system but rag_raft: its reading adapter was measured and not adopted (docs/evaluation.md), and it trains for
# about a minute even with --quick. It runs when --systems names it.
DEFAULT_SYSTEMS = tuple(s for s in SYSTEMS if s != "rag_raft")
PROBES = ("privacy", "freshness", "forgetting")
# Systems that fine-tune or adapt the generator's weights: an LLM server (--generator URL) cannot run them.
NEEDS_WEIGHTS = ("lora", "full_ft", "rag_lora", "rag_full_ft", "rag_raft")
# facts whose template question the base model rewords, half of them held out: 40 left 31 held-out paraphrases, so
# close that two epochs often tied; 64 leave about 50
PARAPHRASES, QUICK_PARAPHRASES = 64, 6
QUICK_DOCUMENT_SHARE = 8  # --quick fine-tunes on, and asks about, one document in eight (10 minutes on 2 cores)
QUICK_LEARNED = 20  # --quick asks at most this many of the training pairs to measure what was learnt
CLOZE, QUICK_CLOZE = 100, 15  # cloze questions over the training documents
RECALL_K = 5
READING_EXAMPLES = 600  # RAFT reading examples generated from the corpus (fewer with --quick)
QUICK_READING_EXAMPLES = 120


@dataclass
class EvalOptions:
    qa: Path  # QA set: JSON Lines (id, question, answers, source, split) or a SQuAD v1.1/v2.0 JSON file
    corpus: Path | None = None  # folder of documents; None when --qa is SQuAD (its paragraphs become the corpus)
    acl: Path | None = None  # permission policy for the privacy probe (default: the corpus's .rag-acl.toml)
    out: Path = Path("eval-out")  # where report.json, report.md and the charts go
    quick: bool = False  # a subset of questions and fewer epochs: for the demo and CI
    systems: list[str] | None = None  # subset of SYSTEMS; default DEFAULT_SYSTEMS
    generator: str | None = None  # base model for every system; default the bundled Gemma 3 270M
    api_key_env: str | None = None  # with an LLM server's URL as the generator: the variable holding its key
    embedder: str | None = None  # embedder for the retrieval systems; default the bundled MiniLM
    seed: int = 0
    split: str = "test"
    max_questions: int | None = None
    progress: bool = False
    probes: list[str] = field(default_factory=lambda: ["privacy", "freshness", "forgetting"])
    tune: bool = False  # choose LoRA's rank and learning rate on the dev split first (three extra trainings)
    epochs: int | None = None  # most epochs a fine-tune trains (default 6, 2 with quick): a GPU affords more


def run_eval(options: EvalOptions) -> dict:
    import torch

    from ingest.common import best_device
    from ingest.embedding import load_embedder
    from ingest.policy import find_policy
    from ingest.sync import index_folder
    from rag.generation import TRAINED_TO_READ, HFGenerator, inference_dtype, load_causal_lm, load_generator
    from rag.llm_server import is_server_url
    from rag.retrieval import Retriever

    started, cpu_started = time.perf_counter(), _cpu_seconds()
    # An LLM server reads and answers, but its weights cannot be fine-tuned from here.
    remote = is_server_url(options.generator)
    valid = [s for s in SYSTEMS if not remote or s not in NEEDS_WEIGHTS]
    systems = options.systems or [s for s in DEFAULT_SYSTEMS if s in valid]
    unknown = set(systems) - set(valid)
    if unknown:
        name = sorted(unknown)[0]
        why = "needs the generator's weights, which an LLM server keeps" if name in NEEDS_WEIGHTS else "is unknown"
        raise UsageError(f"system {name!r} {why} (valid: {', '.join(valid)})")
    unknown = set(options.probes) - set(PROBES)
    if unknown:
        raise UsageError(f"unknown probe {sorted(unknown)[0]!r} (valid: {', '.join(PROBES)}, or none)")
    corpus = _corpus(options)
    items = load_qa(options.qa)
    policy = find_policy(corpus, options.acl)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if options.progress else (lambda msg: None)

    stage = _StageClock()
    say(f"Indexing {corpus} ...")
    embedder = load_embedder(options.embedder, progress=False)
    index_dir = eval_index_dir(corpus, embedder)
    index_started = time.perf_counter()
    index_folder(corpus, index_dir, embedder, acl=options.acl)
    index_seconds = time.perf_counter() - index_started
    retriever = Retriever(index_dir, embedder=embedder)
    chunks = list(retriever.index.catalog.iter_chunks())
    if options.quick:  # a seeded quarter of the documents: fine-tuned on, and asked about (training is the cost)
        sources = sorted({c.source for c in chunks})
        kept = set(random.Random(options.seed).sample(sources, max(1, len(sources) // QUICK_DOCUMENT_SHARE)))
        chunks = [c for c in chunks if c.source in kept]
        rng = random.Random(options.seed)  # and the same share of the questions about no document
        items = [q for q in items if q.source in kept or (q.source is None and rng.random() < 1 / QUICK_DOCUMENT_SHARE)]
    test = _select(items, options)
    train = [q for q in items if q.split == "train"]

    # every system answers in the precision `rag ask` uses (bf16 where native: 2.4x faster decoding, same accuracy)
    answer_dtype = inference_dtype(best_device())
    with stage("load the base model"):
        if remote:
            base = load_generator(options.generator, options.api_key_env)
        else:
            base_model, tokenizer = load_causal_lm(options.generator, dtype=answer_dtype)
            base = HFGenerator(base_model, tokenizer, getattr(base_model, "name_or_path_display", "base"))
    report: dict = {"systems": {}, "training": {}, "index_seconds": round(index_seconds, 2)}
    wanted = [v for v in VARIANTS if v in systems or f"rag_{v}" in systems]
    tuned: dict[str, HFGenerator] = {}
    if wanted:
        say("Augmenting the documents (template questions, shuffled documents, the base model's paraphrases) ...")
        with stage("augment"):
            data = augment(
                chunks,
                train,
                base,
                seed=options.seed,
                paraphrases=QUICK_PARAPHRASES if options.quick else PARAPHRASES,
                replay=replay_passages(),
                cloze_limit=QUICK_CLOZE if options.quick else CLOZE,
            )
            report["augmentation"] = dict(data.stats, tokens=_tokens(tokenizer, data))
        lora_choice = None
        if options.tune:
            say("Choosing LoRA's rank and learning rate on the dev split ...")
            dev = [(q.question, q.answers[0]) for q in items if q.split == "dev" and q.answers]
            with stage("tune LoRA"):
                report["tuning"] = tune_lora(options.generator, data, dev, options.seed, options.progress)
            lora_choice = report["tuning"]["chosen"]
        limit = QUICK_LEARNED if options.quick else None
        with stage("learned: closed_book"):
            report["learned"] = {"closed_book": learned(base, data, limit)}
        for variant in wanted:
            say(f"Fine-tuning (or loading the cached) {variant} on the augmented documents ...")
            settings = settings_for(variant, options.seed, options.quick, lora_choice, options.epochs)
            with stage(f"fine-tune: {variant}"):
                model, variant_tokenizer, stats = trained_model(options.generator, data, settings, options.progress)
                if hasattr(model, "merge_and_unload"):  # a LoRA answers as one merged model, like the others
                    model = model.merge_and_unload()
                setattr(model.config, FINE_TUNED_ON_QA, True)  # asked in the format it trained on (eval/systems.py)
                tuned[variant] = HFGenerator(model.to(getattr(torch, answer_dtype)), variant_tokenizer, variant)
            report["training"][variant] = stats
            say(f"Measuring what {variant} learnt ...")
            with stage(f"learned: {variant}"):
                report["learned"][variant] = learned(tuned[variant], data, limit)
        report["training"]["base_model_bytes"] = sum(p.numel() * p.element_size() for p in base_model.parameters())

    raft = None
    if "rag_raft" in systems:
        say("Training (or loading the cached) RAFT reading adapter on reading examples made from the documents ...")
        limit = QUICK_READING_EXAMPLES if options.quick else READING_EXAMPLES
        with stage("fine-tune: rag_raft"):
            examples = reading_examples(retriever.index.catalog.iter_chunks(), options.seed, limit)
            raft_model, raft_tokenizer, raft_training = trained_adapter(
                options.generator, examples, reading_settings(options.seed), options.progress
            )
        # merged into a copy of the base weights, in the base's precision: reading costs what the base's costs
        raft_model = raft_model.merge_and_unload().to(next(base_model.parameters()).dtype)
        setattr(raft_model.config, TRAINED_TO_READ, True)
        raft = HFGenerator(raft_model, raft_tokenizer, "raft")
        report["raft_training"] = dict(raft_training, reading_examples=len(examples))

    user_of = lambda q: asking_user(policy, q.source)  # noqa: E731 - one rule for every system
    if "long_context" in systems:
        report["long_context"] = long_context.plan(base, retriever, {user_of(q) for q in test})
        if not report["long_context"]["runs"]:
            say(f"long_context left out: {report['long_context']['reason']}")
            systems = [s for s in systems if s != "long_context"]

    oracle = OracleRetriever(retriever)
    # systems without retrieval answer every question in batches; their latency is timed on a sample asked alone
    closed_books = {"closed_book": base, **tuned}
    runners = {
        "rag": lambda q: with_retrieval(base, retriever, q.question, user_of(q)),
        "rag_raft": lambda q: with_retrieval(raft, retriever, q.question, user_of(q), raft_reader(raft, retriever)),
        "oracle": lambda q: _oracle(oracle, base, q, user_of(q)),
    }
    for variant, generator in tuned.items():
        runners[f"rag_{variant}"] = lambda q, g=generator: with_retrieval(g, retriever, q.question, user_of(q))
    replies: dict[str, list] = {}
    latency: dict[str, list[float]] = {}
    for name in systems:
        say(f"Asking {len(test)} questions: {name}")
        with stage(f"ask: {name}"):
            if name == "long_context":
                replies[name], latency[name] = long_context.ask_grouped(
                    base, retriever, test, user_of, timed=LATENCY_SAMPLE
                )
            elif name in closed_books:
                replies[name] = closed_book_all(closed_books[name], [q.question for q in test])
                sample = test[:LATENCY_SAMPLE]
                latency[name] = [closed_book(closed_books[name], q.question).seconds for q in sample]
            else:
                replies[name] = [runners[name](q) for q in _bar(test, name, options.progress)]

    report["config"] = _config(options, corpus, test, systems, embedder.name, base.name)
    for name, rows in replies.items():
        outcomes = [score(r.answer, r.abstained, q.answers) for q, r in zip(test, rows)]
        metrics = summarise(outcomes, seed=options.seed, samples=500 if options.quick else 1000)
        seconds = latency.get(name) or [r.seconds for r in rows]
        metrics["latency_p50"] = round(statistics.median(seconds), 3) if seconds else 0.0
        if name.startswith("rag"):
            recalls = [recall_at_k(retriever, q.question, q.source, user_of(q), RECALL_K) for q in test]
            known = [r for r in recalls if r is not None]
            metrics[f"recall@{RECALL_K}"] = round(sum(known) / len(known), 4) if known else None
        variant = name.removeprefix("rag_")
        if variant in report["training"]:
            metrics["training_seconds"] = report["training"][variant].get("seconds")
        if name == "rag_raft":
            metrics["training_seconds"] = report["raft_training"].get("seconds")
        report["systems"][name] = metrics
    report["examples"] = _examples(test, replies)
    report["probes"] = {}
    if "privacy" in options.probes and not policy.is_open:
        with stage("probe: privacy"):
            report["probes"]["privacy"] = probes.privacy(
                items, options.split, options.quick, base, tuned, raft, retriever, say
            )
    if "freshness" in options.probes:
        retrain = {v: s.get("seconds") for v, s in report["training"].items() if isinstance(s, dict)}
        with stage("probe: freshness"):
            report["probes"]["freshness"] = probes.freshness(
                items, corpus, index_dir, embedder, base, tuned, raft, retrain, options, say
            )
    if "forgetting" in options.probes and tuned:
        with stage("probe: forgetting"):
            report["probes"]["forgetting"] = probes.forgetting(base, tuned)
    report["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["stage_seconds"] = stage.seconds
    report["cpu_seconds"] = round(_cpu_seconds() - cpu_started, 1)

    from .report import write_report

    write_report(report, options.out)
    return report


class _StageClock:
    """Wall seconds per stage, in the report: where an evaluation's time goes (training is rarely all of it)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 1)


def _tokens(tokenizer, data) -> dict:
    """Tokens of one epoch's training text: the QA pairs, paraphrases and replay, plus one view of the documents."""
    count = lambda examples: sum(len(tokenizer(e.prompt + e.target)["input_ids"]) for e in examples)  # noqa: E731
    return {"qa_and_paraphrases": count(data.examples), "documents_per_view": count(data.document_views[0])}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 1)


def _corpus(options: EvalOptions) -> Path:
    if options.corpus is not None:
        return options.corpus
    if not is_squad(options.qa):
        raise UsageError(f"--qa {options.qa} is JSON Lines: give the documents with --corpus DIR")
    digest = hashlib.sha256(Path(options.qa).read_bytes()).hexdigest()[:16]
    return squad_to_corpus(options.qa, cache_dir("eval", "squad", digest))


def _select(items: list[QAItem], options: EvalOptions) -> list[QAItem]:
    test = [q for q in items if q.split == options.split]
    limit = options.max_questions or (QUICK_QUESTIONS if options.quick else None)
    if limit and len(test) > limit:
        # Keep the share of unanswerable questions: a quick run must still measure abstention.
        rng = random.Random(options.seed)
        answerable = [q for q in test if q.answerable]
        unanswerable = [q for q in test if not q.answerable]
        n_un = round(limit * len(unanswerable) / len(test))
        test = rng.sample(answerable, limit - n_un) + rng.sample(unanswerable, n_un)
    if not test:
        raise UsageError(f"{options.qa} has no {options.split!r} questions")
    return test


def _oracle(oracle: OracleRetriever, generator, item: QAItem, user):
    oracle.gold = item.source
    return with_retrieval(generator, oracle, item.question, user)


def _examples(test, replies, n: int = 8) -> list[dict]:
    rows = []
    for i, q in enumerate(test[:n]):
        row = {"question": q.question, "gold": list(q.answers)}
        row.update({name: r[i].answer for name, r in replies.items()})
        rows.append(row)
    return rows


def _config(options, corpus, test, systems, embedder_name, generator_name) -> dict:
    return {
        "qa": str(options.qa),
        "corpus": str(corpus),
        "split": options.split,
        "questions": len(test),
        "answerable": sum(q.answerable for q in test),
        "quick": options.quick,
        "systems": systems,
        "generator": generator_name,
        "embedder": embedder_name,
        "seed": options.seed,
        "device": _device(),
    }


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"


def eval_index_dir(corpus: Path, embedder) -> Path:
    """The cached index of ``corpus`` for ``embedder``. The format version is part of the key: a cached index of an
    older format would be refused, not upgraded. So are the embedder's runtime and precision: an index may be searched
    from another (vectors agree within 3e-3), but the evaluation measures one embedder, as a fresh `rag index` with the
    same settings would build it."""
    key = (str(corpus.resolve()), embedder.name, embedder.runtime, embedder.dtype, f"format-{FORMAT_VERSION}")
    return cache_dir("eval", "index", _digest(*key))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _bar(items, name: str, show: bool):
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=name, file=sys.stderr, leave=False)


__all__ = ["EvalOptions", "run_eval"]
