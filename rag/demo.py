"""``rag demo``: index the bundled corpus into a fresh index, then ask the same questions as different users.

The script of the demo (who asks what) lives beside the corpus in ``corpora/acme-demo.json`` so the corpus and its
demo change together.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import RagError
from ingest.paths import bundled_corpus


@dataclass
class DemoScript:
    corpus: Path
    users: list[str | None]  # None = anonymous
    questions: list[str]


def load_script(name: str = "acme") -> DemoScript:
    corpus = bundled_corpus(name)
    script_path = corpus.parent / f"{name}-demo.json"
    if not corpus.is_dir() or not script_path.is_file():
        raise RagError(
            f"the bundled demo corpus was not found at {corpus}; run `rag demo` from an editable install "
            "of the repository (pip install -e .)"
        )
    data = json.loads(script_path.read_text())
    return DemoScript(corpus, data["users"], data["questions"])


def run_demo(
    script: DemoScript,
    index_dir: Path,
    retriever_factory: Callable,
    generator,
    answer_question: Callable,
    echo: Callable[[str], None],
) -> list[dict]:
    """Ask every question as every user; returns the transcript (for --json and tests)."""
    transcript = []
    retriever = retriever_factory(index_dir)
    for question in script.questions:
        echo("")
        echo(f"Q: {question}")
        for user in script.users:
            answer = answer_question(retriever, generator, question, user=user)
            who = user or "anonymous"
            if answer.abstained:
                echo(f"  {who:>10}: I don't know.")
            else:
                cited = ", ".join(sorted({c.source for c in answer.citations})) or "no citation"
                echo(f"  {who:>10}: {answer.answer}   [{cited}]")
            transcript.append({"user": user, "question": question, **answer.to_json()})
    return transcript
