"""Reader signals on real questions, for calibration: every gate and signal of the extractive reader, recorded with
whether its span was right, on the SQuAD 2.0 training pool (and the demo corpus's train and dev splits).

The pool's articles are split once, by a seeded shuffle, into learning articles (for trained models: the span
model, the reading adapter), calibration articles (the learned gate is fitted on their rows) and held-out articles;
every decision (which gates stay hard, the learned model's threshold, which lever to keep) is measured on the
held-out ones. Articles are indexed two at a time, as the evaluation pair is, so retrieval sees as many distractors
as in ``rag eval``. Rows are appended to a JSON Lines file as they come, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.common import cache_dir

from .metrics import contains_alias
from .qa import QAItem, article_filename, load_squad, write_squad_corpus

DEFAULT_POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad2" / "train-20articles.json.gz"
HOLDOUT_ARTICLES = 4
CALIBRATION_ARTICLES = 4
ARTICLES_PER_CORPUS = 2


@dataclass(frozen=True)
class Split:
    """Article titles. Trained models (the span reader, the reading adapter) learn on ``learn``; the answerability
    gate is fitted on ``calibration``, articles those models never saw; every choice is measured on ``holdout``."""

    learn: list[str]
    calibration: list[str]
    holdout: list[str]


def rows_path(embedder: str, generator: str, seed: int, shard: str) -> Path:
    """Where ``python -m eval.calibrate collect`` writes one shard's rows, and ``fit`` finds them."""
    from rag.reader_config import settings_filename

    name = settings_filename(embedder, generator).removesuffix(".json")
    return cache_dir("calibrate") / f"{name}-seed{seed}-{shard.replace('/', 'of')}.jsonl"


def load_pool(path: Path) -> dict:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def split_articles(data: dict, seed: int) -> Split:
    titles = sorted(article["title"] for article in data["data"])
    random.Random(seed).shuffle(titles)
    calibration_end = HOLDOUT_ARTICLES + CALIBRATION_ARTICLES
    return Split(
        learn=sorted(titles[calibration_end:]),
        calibration=sorted(titles[HOLDOUT_ARTICLES:calibration_end]),
        holdout=sorted(titles[:HOLDOUT_ARTICLES]),
    )


def sample_questions(data: dict, titles: list[str], per_article: int, seed: int) -> dict[str, list[QAItem]]:
    """Up to ``per_article`` questions of each article (answerable and unanswerable as they come), seeded."""
    chosen = {}
    for article in data["data"]:
        if article["title"] in titles:
            items = load_squad({"data": [article]})
            random.Random(f"{seed}:{article['title']}").shuffle(items)
            chosen[article["title"]] = items[:per_article]
    return chosen


def corpus_groups(titles: list[str]) -> list[list[str]]:
    return [titles[i : i + ARTICLES_PER_CORPUS] for i in range(0, len(titles), ARTICLES_PER_CORPUS)]


def observe(retriever, generator, items: list[QAItem], user_of, group, done: set[str]) -> Iterator[dict]:
    """One row per question: the observing reader's span, its signals, and whether it was right."""
    from rag.answer import answer_with_details
    from rag.reader import ExtractiveReader
    from rag.reader_config import ReaderSettings
    from rag.span_reader import cached_span_model

    reader = ExtractiveReader(
        generator, retriever.embedder.embed, ReaderSettings(), observe=True, span_model=cached_span_model()
    )
    for item in items:
        if item.id in done:
            continue
        answer, read = answer_with_details(retriever, generator, item.question, user=user_of(item), reader=reader)
        yield {
            "id": item.id,
            "group": group(item) if callable(group) else group,
            "question": item.question,
            "answerable": item.answerable,
            "answer": read.answer,
            "code": read.code,
            "correct": bool(item.answerable and not read.abstained and contains_alias(read.answer, item.answers)),
            # the span model's own best span: what the reader could say instead (eval.fit_reader.pick)
            "second": read.second.text if read.second else "",
            "second_correct": bool(item.answerable and read.second and contains_alias(read.second.text, item.answers)),
            "seconds": answer.timings.get("total", 0.0),
            "signals": read.signals,
        }


def collect_pool(
    pool: Path,
    out: Path,
    retriever_for,
    generator,
    per_article: tuple[int, int],
    seed: int,
    shard: tuple[int, int] = (0, 1),
) -> None:
    """Rows for ``per_article`` (training, held-out) questions of every pool article, appended to ``out``. Articles
    are read in groups of two; this process takes the groups ``shard[0]`` of every ``shard[1]``."""
    data = load_pool(pool)
    split = split_articles(data, seed)
    # held-out groups first: an interrupted run still has what every decision is measured on
    groups = [("holdout", g) for g in corpus_groups(split.holdout)] + [
        ("train", g) for g in corpus_groups(split.calibration)
    ]
    done = _done(out)
    for number, (part, titles) in enumerate(groups):
        if number % shard[1] != shard[0]:
            continue
        count = per_article[0] if part == "train" else per_article[1]
        items = [q for questions in sample_questions(data, titles, count, seed).values() for q in questions]
        with tempfile.TemporaryDirectory() as scratch:
            corpus = write_squad_corpus({"data": [a for a in data["data"] if a["title"] in titles]}, Path(scratch))
            retriever = retriever_for(corpus)
            name = f"{part}:{'+'.join(article_filename(t) for t in titles)}"
            _append(out, observe(retriever, generator, items, lambda item: None, name, done), len(items), name)


def collect_demo(corpus: Path, qa: Path, out: Path, retriever_for, generator, splits=("train", "dev")) -> None:
    """Rows for the demo corpus's calibration splits, each question asked as a user who may read its source."""
    from ingest.policy import find_policy

    from .ask_eval import asking_user
    from .qa import load_qa

    policy = find_policy(corpus, None)
    items = [q for q in load_qa(qa) if q.split in splits]
    retriever = retriever_for(corpus)
    user_of = lambda item: asking_user(policy, item.source)  # noqa: E731
    rows = observe(retriever, generator, items, user_of, lambda item: f"demo:{item.split}", _done(out))
    _append(out, rows, len(items), "demo")


def _done(out: Path) -> set[str]:
    if not out.is_file():
        return set()
    return {json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines() if line.strip()}


def _append(out: Path, rows: Iterator[dict], total: int, name: str) -> None:
    from tqdm import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as handle:
        for row in tqdm(rows, total=total, desc=name, file=sys.stderr, mininterval=10):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()


def load_rows(paths: list[Path], demo_qa: Path | None = None) -> list[dict]:
    """The rows of ``paths``; demo rows grouped by their split ("demo:train", "demo:dev"), read from ``demo_qa``
    for rows recorded before the group named the split."""
    rows = []
    for path in paths:
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if demo_qa is not None:
        from .qa import load_qa

        splits = {item.id: item.split for item in load_qa(demo_qa)}
        for row in rows:
            if row["group"] == "demo":
                row["group"] = f"demo:{splits[row['id']]}"
    return rows
