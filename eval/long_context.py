"""The in-context alternative: every document the asking user may read, in the prompt, then the question.

No retrieval and no training. It runs when the permitted documents fit the generator's context window (32k tokens
for Gemma 3 270M) with room for the question; otherwise ``plan`` says why not and the system is left out. The
documents' KV cache is computed once per user and reused for that user's questions, which are decoded together in
batches (questions are asked grouped by user): a question costs its own tokens plus its share of a batch, not a fresh
11k-token prefill.
"""

from __future__ import annotations

from collections import defaultdict

from .systems import Reply, ask_after, ask_all_after

ROOM_FOR_QUESTION = 512  # tokens kept free for the instructions, the question and the answer
INSTRUCTIONS = 'Answer the question from the documents above with a short phrase, or "unknown" if they do not say.\n\n'


def documents_text(retriever, user: str | None) -> str:
    """The chunks the user may read, grouped by document (path as a heading), in catalog order."""
    allowed = retriever.permitted_ids(user)
    allowed = None if allowed is None else set(allowed.tolist())
    by_source: dict[str, list[str]] = defaultdict(list)
    for chunk in retriever.index.catalog.iter_chunks():
        if allowed is None or chunk.id in allowed:
            by_source[chunk.source].append(chunk.text)
    return "".join(f"### {source}\n" + "\n".join(texts) + "\n\n" for source, texts in sorted(by_source.items()))


def plan(generator, retriever, users: set[str | None]) -> dict:
    """{"runs": bool, "tokens": {user: n}, "window": n, "reason": str}: whether every user's documents fit."""
    window = generator.context_window
    tokens = {str(user): generator.count_tokens(documents_text(retriever, user)) for user in sorted(users, key=str)}
    largest = max(tokens.values(), default=0)
    runs = largest + ROOM_FOR_QUESTION <= window
    reason = (
        f"the largest permitted document set is {largest} tokens, within the {window}-token window"
        if runs
        else f"the permitted documents need up to {largest} tokens, more than the {window}-token window allows "
        f"({ROOM_FOR_QUESTION} kept for the question)"
    )
    return {"runs": runs, "tokens": tokens, "window": window, "reason": reason}


def ask(generator, retriever, question: str, user: str | None) -> Reply:
    return ask_after(generator, _prefix(retriever, user), question)


def ask_grouped(generator, retriever, items, user_of, timed: int = 0) -> tuple[list[Reply], list[float]]:
    """Every item's reply, in the items' order, and the seconds of the first ``timed`` items asked one at a time.

    Each user's questions are decoded together in batches behind one computation of that user's documents' cache; a
    batched reply's seconds are its share of its user's time. A timed question is asked again, alone, once its user's
    cache exists: what a user waits for from a server that holds the documents' cache."""
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[user_of(item)].append(i)
    replies: list[Reply | None] = [None] * len(items)
    seconds: list[float] = []
    for user, indices in groups.items():
        prefix = _prefix(retriever, user)
        for i, reply in zip(indices, ask_all_after(generator, prefix, [items[i].question for i in indices])):
            replies[i] = reply
        seconds += [ask_after(generator, prefix, items[i].question).seconds for i in indices if i < timed]
    return replies, seconds  # type: ignore[return-value]


def _prefix(retriever, user: str | None) -> str:
    return documents_text(retriever, user) + INSTRUCTIONS
