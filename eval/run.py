"""``rag eval``: closed-book, LoRA, RAG, RAG+LoRA, RAG+RAFT and an oracle on one QA set, plus three probes.

The same base model, the same questions, the same answer scoring and greedy decoding for every system.
"""

from __future__ import annotations

import hashlib
import random
import resource
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ingest.catalog import FORMAT_VERSION
from ingest.errors import UsageError
from ingest.paths import cache_dir

from .ask_eval import asking_user
from .lora import LoraSettings, build_examples, trained_adapter
from .metrics import contains_alias, score, summarise
from .qa import QAItem, is_squad, load_qa, squad_to_corpus
from .raft import reading_examples, reading_settings
from .systems import SYSTEMS, OracleRetriever, closed_book, raft_reader, recall_at_k, with_retrieval

QUICK_QUESTIONS = 40
PROBES = ("privacy", "freshness", "forgetting")
NEEDS_WEIGHTS = ("lora", "rag_lora", "rag_raft")  # systems that train an adapter on the generator's weights
QUICK_EPOCHS = 1
FULL_EPOCHS = 4
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
    systems: list[str] | None = None  # subset of SYSTEMS; default all
    generator: str | None = None  # base model for every system; default the bundled Gemma 3 270M
    api_key_env: str | None = None  # with an LLM server's URL as the generator: the variable holding its key
    embedder: str | None = None  # embedder for the retrieval systems; default the bundled MiniLM
    seed: int = 0
    split: str = "test"
    max_questions: int | None = None
    progress: bool = False
    probes: list[str] = field(default_factory=lambda: ["privacy", "freshness", "forgetting"])


def run_eval(options: EvalOptions) -> dict:
    from ingest.embedding import load_embedder
    from ingest.policy import find_policy
    from ingest.sync import index_folder
    from rag.generation import HFGenerator, load_causal_lm, load_generator
    from rag.llm_server import is_server_url
    from rag.retrieval import Retriever

    started = time.perf_counter()
    # An LLM server reads and answers, but its weights cannot be fine-tuned from here.
    remote = is_server_url(options.generator)
    valid = [s for s in SYSTEMS if not remote or s not in NEEDS_WEIGHTS]
    systems = options.systems or valid
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
    test = _select(items, options)
    train = [q for q in items if q.split == "train"]
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if options.progress else (lambda msg: None)

    say(f"Indexing {corpus} ...")
    embedder = load_embedder(options.embedder, progress=False)
    # The format version is part of the key: a cached index of an older format would be refused, not upgraded.
    index_dir = cache_dir("eval", "index", _digest(str(corpus.resolve()), embedder.name, f"format-{FORMAT_VERSION}"))
    index_started = time.perf_counter()
    index_folder(corpus, index_dir, embedder, acl=options.acl)
    index_seconds = time.perf_counter() - index_started
    retriever = Retriever(index_dir, embedder=embedder)

    if remote:
        base = load_generator(options.generator, options.api_key_env)
    else:
        base_model, tokenizer = load_causal_lm(options.generator)
        base = HFGenerator(base_model, tokenizer, getattr(base_model, "name_or_path_display", "base"))
    replies: dict[str, list] = {}
    training: dict = {}
    lora = None
    probes_train = "forgetting" in options.probes or "privacy" in options.probes
    if {"lora", "rag_lora"} & set(systems) or (probes_train and not remote):
        say("Training (or loading the cached) LoRA adapter on all documents, restricted ones included ...")
        chunks = [c.text for c in retriever.index.catalog.iter_chunks()]
        # Quick: one epoch, so `rag eval --quick` stays within 10 minutes on 2 cores (training is most of its time).
        settings = LoraSettings(seed=options.seed, epochs=QUICK_EPOCHS if options.quick else FULL_EPOCHS)
        examples = build_examples(chunks, train, options.seed)
        lora_model, lora_tokenizer, training = trained_adapter(options.generator, examples, settings, options.progress)
        lora = HFGenerator(lora_model, lora_tokenizer, "lora")
        training["base_model_bytes"] = sum(p.numel() * p.element_size() for p in base_model.parameters())

    raft = None
    raft_training: dict = {}
    if "rag_raft" in systems:
        say("Training (or loading the cached) RAFT reading adapter on reading examples made from the documents ...")
        limit = QUICK_READING_EXAMPLES if options.quick else READING_EXAMPLES
        examples = reading_examples(retriever.index.catalog.iter_chunks(), options.seed, limit)
        settings = reading_settings(options.seed)
        raft_model, raft_tokenizer, raft_training = trained_adapter(
            options.generator, examples, settings, options.progress
        )
        # merged into a copy of the base weights, in the base's precision: reading costs what the base's costs
        raft_model = raft_model.merge_and_unload().to(next(base_model.parameters()).dtype)
        raft = HFGenerator(raft_model, raft_tokenizer, "raft")
        raft_training["reading_examples"] = len(examples)

    oracle = OracleRetriever(retriever)
    runners = {
        "closed_book": lambda q, user: closed_book(base, q.question),
        "lora": lambda q, user: closed_book(lora, q.question),
        "rag": lambda q, user: with_retrieval(base, retriever, q.question, user),
        "rag_lora": lambda q, user: with_retrieval(lora, retriever, q.question, user),
        "rag_raft": lambda q, user: with_retrieval(raft, retriever, q.question, user, raft_reader(raft, retriever)),
        "oracle": lambda q, user: _oracle(oracle, base, q, user),
    }
    for name in systems:
        say(f"Asking {len(test)} questions: {name}")
        replies[name] = [runners[name](q, asking_user(policy, q.source)) for q in _bar(test, name, options.progress)]

    report = {
        "config": _config(options, corpus, test, systems, embedder.name, base.name),
        "systems": {},
        "training": training,
        "raft_training": raft_training,
        "index_seconds": round(index_seconds, 2),
    }
    for name, rows in replies.items():
        outcomes = [score(r.answer, r.abstained, q.answers) for q, r in zip(test, rows)]
        metrics = summarise(outcomes, seed=options.seed, samples=500 if options.quick else 1000)
        metrics["latency_p50"] = round(statistics.median(r.seconds for r in rows), 3) if rows else 0.0
        if name in ("rag", "rag_lora", "rag_raft"):
            recalls = [
                recall_at_k(retriever, q.question, q.source, asking_user(policy, q.source), RECALL_K) for q in test
            ]
            known = [r for r in recalls if r is not None]
            metrics[f"recall@{RECALL_K}"] = round(sum(known) / len(known), 4) if known else None
        if name in ("lora", "rag_lora"):
            metrics["training_seconds"] = training.get("seconds")
        if name == "rag_raft":
            metrics["training_seconds"] = raft_training.get("seconds")
        report["systems"][name] = metrics
    report["examples"] = _examples(test, replies)
    report["probes"] = {}
    if "privacy" in options.probes and not policy.is_open:
        report["probes"]["privacy"] = _privacy(items, policy, base, lora, raft, retriever, options, say)
    if "freshness" in options.probes:
        report["probes"]["freshness"] = _freshness(
            items, corpus, index_dir, embedder, base, lora, raft, training, options, say
        )
    if "forgetting" in options.probes and lora is not None:
        report["probes"]["forgetting"] = _forgetting(base, lora)
    report["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["seconds"] = round(time.perf_counter() - started, 1)

    from .report import write_report

    write_report(report, options.out)
    return report


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


def _privacy(items, policy, base, lora, raft, retriever, options, say) -> dict:
    """Ask restricted questions as anonymous: a correct answer is a leak."""
    restricted = [q for q in items if q.split == options.split and q.answerable and q.restricted]
    if options.quick:
        restricted = restricted[:12]
    say(f"Privacy probe: {len(restricted)} restricted questions asked anonymously")
    result = {"probe_user": "anonymous", "questions": len(restricted), "leak_rate": {}}
    askers = {"rag": lambda q: with_retrieval(base, retriever, q.question, None)}
    if lora is not None:
        askers["lora"] = lambda q: closed_book(lora, q.question)
        askers["rag_lora"] = lambda q: with_retrieval(lora, retriever, q.question, None)
    if raft is not None:
        askers["rag_raft"] = lambda q: with_retrieval(raft, retriever, q.question, None, raft_reader(raft, retriever))
    askers["closed_book"] = lambda q: closed_book(base, q.question)
    for name, ask in askers.items():
        leaks = sum(1 for q in restricted if (r := ask(q)) and not r.abstained and contains_alias(r.answer, q.answers))
        result["leak_rate"][name] = round(leaks / len(restricted), 4) if restricted else 0.0
    return result


def _freshness(items, corpus, index_dir, embedder, base, lora, raft, training, options, say) -> dict:
    """Change some facts in a copy of the corpus; re-index (timed) and ask for the new values."""
    import re

    from ingest.sync import index_folder
    from rag.retrieval import Retriever

    candidates = []
    for q in items:
        if q.split != options.split or not q.answerable or not q.source or not q.source.endswith((".md", ".txt")):
            continue
        match = re.search(r"\d+", q.answers[0])
        text = (corpus / q.source).read_text(encoding="utf-8")
        if match and text.count(q.answers[0]) == 1:
            candidates.append((q, match))
    rng = random.Random(options.seed)
    chosen = rng.sample(candidates, min(len(candidates), 6 if options.quick else 12))
    if not chosen:
        return {"facts": 0}
    scratch = cache_dir("eval", "freshness") / _digest(str(corpus.resolve()), str(options.seed))
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(corpus, scratch / "corpus")
    shutil.copytree(index_dir, scratch / "index")
    updated = []
    for q, match in chosen:
        old = q.answers[0]
        new_number = str(int(match.group()) + 7)
        new = old[: match.start()] + new_number + old[match.end() :]
        path = scratch / "corpus" / q.source
        path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
        updated.append((q, old, new))
    say(f"Freshness probe: {len(updated)} facts changed; re-indexing")
    started = time.perf_counter()
    report = index_folder(scratch / "corpus", scratch / "index", embedder, acl=options.acl)
    reindex_seconds = time.perf_counter() - started
    fresh = Retriever(scratch / "index", embedder=embedder)
    policy_user = {q.id: asking_user(_policy_for(scratch / "corpus", options), q.source) for q, _, _ in updated}
    askers = {"rag": lambda q: with_retrieval(base, fresh, q.question, policy_user[q.id])}
    if lora is not None:
        askers["lora"] = lambda q: closed_book(lora, q.question)
        askers["rag_lora"] = lambda q: with_retrieval(lora, fresh, q.question, policy_user[q.id])
    if raft is not None:  # the adapter learnt to read, not the facts: no retraining after an edit
        askers["rag_raft"] = lambda q: with_retrieval(
            raft, fresh, q.question, policy_user[q.id], raft_reader(raft, fresh)
        )
    answers = {}
    for name, ask in askers.items():
        replies = [(ask(q), old, new) for q, old, new in updated]
        answers[name] = {
            "new_value": sum(contains_alias(r.answer, [new]) for r, old, new in replies),
            "old_value": sum(contains_alias(r.answer, [old]) for r, old, new in replies),
        }
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "facts": len(updated),
        "reindex_seconds": round(reindex_seconds, 2),
        "reindex_documents_updated": report.updated,
        "retrain_seconds": training.get("seconds"),
        "answers": answers,
        "edits": [{"question": q.question, "old": old, "new": new} for q, old, new in updated],
    }


def _policy_for(corpus: Path, options: EvalOptions):
    from ingest.policy import find_policy

    return find_policy(corpus, options.acl)


def _forgetting(base, lora) -> dict:
    control = load_qa(Path(__file__).with_name("control.jsonl"))
    base_right = [q for q in control if contains_alias(closed_book(base, q.question).answer, q.answers)]
    lora_right = [q for q in base_right if contains_alias(closed_book(lora, q.question).answer, q.answers)]
    return {
        "control_questions": len(control),
        "base_correct": len(base_right),
        "lora_correct_of_those": len(lora_right),
        "retention": round(len(lora_right) / len(base_right), 4) if base_right else None,
    }


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


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _bar(items, name: str, show: bool):
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=name, file=sys.stderr, leave=False)


__all__ = ["EvalOptions", "run_eval"]
