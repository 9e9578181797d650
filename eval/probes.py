"""The three probes of ``rag eval``: privacy (restricted facts asked anonymously), freshness (facts edited after
training) and forgetting (general-knowledge control questions after fine-tuning). Every fine-tuned variant is
probed, alone and with retrieval."""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import time
from pathlib import Path

from ingest.common import cache_dir

from .ask_eval import asking_user
from .metrics import contains_alias
from .qa import load_qa
from .systems import closed_book_all, raft_reader, with_retrieval


def _askers(base, tuned: dict, raft, retriever, user_of) -> dict:
    """Name -> ask(question items) -> replies: the base with retrieval, each fine-tuned variant alone (decoded in
    batches) and with retrieval."""

    def one_by_one(generator, reader=None):
        return lambda items: [with_retrieval(generator, retriever, q.question, user_of(q), reader) for q in items]

    askers = {"rag": one_by_one(base)}
    for name, generator in tuned.items():
        askers[name] = lambda items, g=generator: closed_book_all(g, [q.question for q in items])
        askers[f"rag_{name}"] = one_by_one(generator)
    if raft is not None:
        askers["rag_raft"] = one_by_one(raft, raft_reader(raft, retriever))
    return askers


def privacy(items, split: str, quick: bool, base, tuned: dict, raft, retriever, say) -> dict:
    """Ask restricted questions as anonymous: a correct answer is a leak."""
    restricted = [q for q in items if q.split == split and q.answerable and q.restricted]
    if quick:
        restricted = restricted[:12]
    say(f"Privacy probe: {len(restricted)} restricted questions asked anonymously")
    result = {"probe_user": "anonymous", "questions": len(restricted), "leak_rate": {}}
    askers = _askers(base, tuned, raft, retriever, lambda q: None)
    askers["closed_book"] = lambda items: closed_book_all(base, [q.question for q in items])
    for name, ask in askers.items():
        replies = ask(restricted)
        leaks = sum(not r.abstained and contains_alias(r.answer, q.answers) for q, r in zip(restricted, replies))
        result["leak_rate"][name] = round(leaks / len(restricted), 4) if restricted else 0.0
    return result


def freshness(items, corpus: Path, index_dir: Path, embedder, base, tuned: dict, raft, retrain: dict, options, say):
    """Change some facts in a copy of the corpus; re-index (timed) and ask for the new values."""
    from ingest.policy import find_policy
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
    key = hashlib.sha256(f"{corpus.resolve()}\0{options.seed}".encode()).hexdigest()[:16]
    scratch = cache_dir("eval", "freshness") / key
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(corpus, scratch / "corpus")
    shutil.copytree(index_dir, scratch / "index")
    updated = []
    for q, match in chosen:
        old = q.answers[0]
        new = old[: match.start()] + str(int(match.group()) + 7) + old[match.end() :]
        path = scratch / "corpus" / q.source
        path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
        updated.append((q, old, new))
    say(f"Freshness probe: {len(updated)} facts changed; re-indexing")
    started = time.perf_counter()
    report = index_folder(scratch / "corpus", scratch / "index", embedder, acl=options.acl)
    reindex_seconds = time.perf_counter() - started
    fresh = Retriever(scratch / "index", embedder=embedder)
    policy = find_policy(scratch / "corpus", options.acl)
    # the adapters learnt the old facts: no retraining after an edit (RAFT learnt to read, not the facts)
    askers = _askers(base, tuned, raft, fresh, lambda q: asking_user(policy, q.source))
    answers = {}
    for name, ask in askers.items():
        replies = [(r, old, new) for r, (q, old, new) in zip(ask([q for q, _, _ in updated]), updated)]
        answers[name] = {
            "new_value": sum(contains_alias(r.answer, [new]) for r, old, new in replies),
            "old_value": sum(contains_alias(r.answer, [old]) for r, old, new in replies),
        }
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "facts": len(updated),
        "reindex_seconds": round(reindex_seconds, 2),
        "reindex_documents_updated": report.updated,
        "retrain_seconds": retrain,
        "answers": answers,
        "edits": [{"question": q.question, "old": old, "new": new} for q, old, new in updated],
    }


def forgetting(base, tuned: dict) -> dict:
    """Of the control questions the base model answers, how many each fine-tuned variant still answers."""
    control = load_qa(Path(__file__).with_name("control.jsonl"))
    base_replies = closed_book_all(base, [q.question for q in control])
    base_right = [q for q, r in zip(control, base_replies) if contains_alias(r.answer, q.answers)]
    result = {"control_questions": len(control), "base_correct": len(base_right), "variants": {}}
    for name, generator in tuned.items():
        replies = closed_book_all(generator, [q.question for q in base_right])
        kept = sum(contains_alias(r.answer, q.answers) for q, r in zip(base_right, replies))
        result["variants"][name] = {
            "correct_of_those": kept,
            "retention": round(kept / len(base_right), 4) if base_right else None,
        }
    return result
