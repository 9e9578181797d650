"""QA sets: the project's JSON Lines format and SQuAD v1.1/v2.0 JSON, read into one shape."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ingest.common import RagError

SPLITS = ("train", "dev", "test")


class QAFormatError(RagError):
    """A QA file is malformed (names the file and line)."""


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answers: tuple[str, ...]  # empty: the corpus cannot answer it, the system should abstain
    source: str | None
    split: str = "test"
    restricted: bool = False

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def load_qa(path: Path) -> list[QAItem]:
    """JSON Lines, or a SQuAD JSON file (detected by its ``data`` key)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("{") and '"data"' in stripped[:2000] and "\n{" not in stripped[:200]:
        try:
            return load_squad(json.loads(text))
        except json.JSONDecodeError:
            pass  # not a single JSON document: fall through to JSON Lines
    return load_jsonl(text, str(path))


def load_jsonl(text: str, name: str) -> list[QAItem]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise QAFormatError(f"{name}:{number}: not valid JSON ({err.msg})") from err
        missing = {"id", "question", "answers"} - set(row)
        if missing:
            raise QAFormatError(f"{name}:{number}: missing key {sorted(missing)[0]!r} (need id, question, answers)")
        split = row.get("split", "test")
        if split not in SPLITS:
            raise QAFormatError(f"{name}:{number}: split {split!r} is not one of {', '.join(SPLITS)}")
        if not isinstance(row["answers"], list):
            raise QAFormatError(f"{name}:{number}: answers must be a list of strings ([] = unanswerable)")
        items.append(
            QAItem(
                id=str(row["id"]),
                question=str(row["question"]),
                answers=tuple(str(a) for a in row["answers"]),
                source=row.get("source"),
                split=split,
                restricted=bool(row.get("restricted", False)),
            )
        )
    if not items:
        raise QAFormatError(f"{name}: no questions")
    return items


def article_filename(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("_") + ".txt"


def load_squad(data: dict) -> list[QAItem]:
    """SQuAD questions; ``source`` is the article's file in the corpus that ``squad_to_corpus`` writes."""
    items = []
    for article in data["data"]:
        source = article_filename(article["title"])
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                impossible = qa.get("is_impossible", False)
                answers = () if impossible else tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                items.append(QAItem(qa["id"], qa["question"], answers, None if impossible else source))
    return items


def squad_to_corpus(path: Path, out_dir: Path) -> Path:
    """One text file per article, paragraphs separated by blank lines."""
    return write_squad_corpus(json.loads(Path(path).read_text(encoding="utf-8")), out_dir)


def write_squad_corpus(data: dict, out_dir: Path) -> Path:
    """``squad_to_corpus`` for SQuAD data already loaded."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for article in data["data"]:
        body = "\n\n".join(p["context"].strip() for p in article["paragraphs"])
        (out_dir / article_filename(article["title"])).write_text(body + "\n", encoding="utf-8")
    return out_dir


def is_squad(path: Path) -> bool:
    try:
        head = Path(path).read_text(encoding="utf-8")[:2000].lstrip()
    except OSError:
        return False
    return head.startswith("{") and '"data"' in head and '"version"' in head or '"paragraphs"' in head
