"""The in-context alternative: every document the asking user may read, in the prompt, then the question.

No retrieval and no training. It runs when the permitted documents fit the generator's context window (32k tokens
for Gemma 3 270M) with room for the question; otherwise ``plan`` says why not and the system is left out. The
documents' KV cache is computed once per user and reused for that user's questions (questions are asked grouped by
user), so a question costs its own tokens plus a copy of the cache, not a fresh 12k-token prefill.
"""

from __future__ import annotations

import time
from collections import defaultdict

from rag.answer import IDK

from .lora import closed_book_prompt
from .metrics import is_abstention
from .systems import Reply

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


def ask(generator, retriever, question: str, user: str | None, max_new_tokens: int = 24) -> Reply:
    started = time.perf_counter()
    prefix = documents_text(retriever, user) + INSTRUCTIONS
    text = generator.generate([closed_book_prompt(question)], max_new_tokens, ("\n",), prefix=prefix)[0].strip()
    abstained = is_abstention(text)
    return Reply(IDK if abstained else text, abstained, [], time.perf_counter() - started)


def ask_grouped(generator, retriever, items, user_of) -> list[Reply]:
    """``ask`` for every item, in the items' order, computing each user's document cache once."""
    order = sorted(range(len(items)), key=lambda i: str(user_of(items[i])))
    replies: list[Reply | None] = [None] * len(items)
    for i in order:
        replies[i] = ask(generator, retriever, items[i].question, user_of(items[i]))
    return replies  # type: ignore[return-value]
