"""``rag demo``: index the bundled corpus into a fresh index, then ask the same questions as different users.

The script of the demo (who asks what) lives beside the corpus in ``corpora/acme-demo.json`` so the corpus and its
demo change together.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corpora import bundled_corpus
from ingest.common import RagError, UsageError
from ingest.store import claim_index_dir as claim_for_docrag

# Written into an --index-dir that the demo creates: the demo rebuilds only an index that carries it.
DEMO_MARKER = ".rag-demo"


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
            f"the bundled demo corpus was not found at {corpus}; reinstall docrag (pip install docrag, or "
            "pip install -e . in a checkout)"
        )
    data = json.loads(script_path.read_text())
    return DemoScript(corpus, data["users"], data["questions"])


def claim_index_dir(index_dir: Path) -> None:
    """Make ``index_dir`` the demo's: a new or empty folder gets the marker; a folder that holds anything else and
    no marker (someone's own index, or any other files) is refused, since the demo rebuilds its index from scratch."""
    index_dir = Path(index_dir)
    marker = index_dir / DEMO_MARKER
    if index_dir.exists() and not marker.is_file():
        if not index_dir.is_dir() or any(index_dir.iterdir()):
            raise UsageError(
                f"--index-dir {index_dir} is not empty and was not created by `rag demo`; the demo would rebuild "
                "it from scratch. Give a new or empty folder, or leave --index-dir out for a temporary index"
            )
    claim_for_docrag(index_dir)  # marks it a docrag index dir first, so indexing accepts the demo's marker beside it
    marker.write_text("Created by `rag demo`, which may rebuild the index in this folder.\n")


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
