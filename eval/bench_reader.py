"""Reader latency, side by side: the settings the reader would load for the bundled pair against a baseline settings
file, on the same questions, the same retrieval and the same loaded models, alternating which goes first.

    python -m eval.bench_reader --baseline OLD.json [--qa ../shared/data/squad2/dev-2articles.json] [--questions 60]

Why: a change to the reader's settings (which gates stay hard, whether the span model's span may answer) changes
how much work a question costs, and the machines are too noisy to compare two runs made minutes apart. Only times
are reported; the answers are not scored (``rag eval`` does that).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .qa import load_squad, write_squad_corpus

DEFAULT_QA = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad2" / "dev-2articles.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="A reader settings file to compare against.")
    parser.add_argument("--qa", type=Path, default=DEFAULT_QA, help="SQuAD JSON file: its questions and corpus.")
    parser.add_argument("--questions", type=int, default=60, help="How many questions (seeded sample).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.baseline.is_file():
        parser.error(f"--baseline {args.baseline} is not a file; give a reader settings JSON (rag/data/reader/*.json)")

    from ingest.embedding import load_embedder
    from ingest.sync import index_folder
    from rag.answer import answer_with_details
    from rag.generation import load_generator
    from rag.reader import ExtractiveReader
    from rag.reader_config import ReaderSettings, load_settings
    from rag.retrieval import Retriever
    from rag.span_reader import cached_span_model

    embedder = load_embedder(None, progress=False)
    generator = load_generator(None)
    settings = {
        "baseline": ReaderSettings.from_file(args.baseline),
        "current": load_settings(embedder.name, generator.name),
    }
    span_model = cached_span_model() if any(s.reads_span_model for s in settings.values()) else None
    readers = {
        name: ExtractiveReader(generator, embedder.embed, s, span_model=span_model) for name, s in settings.items()
    }

    data = json.loads(args.qa.read_text(encoding="utf-8"))
    items = load_squad(data)
    random.Random(args.seed).shuffle(items)
    items = items[: args.questions]
    times: dict[str, list[float]] = {name: [] for name in readers}
    with tempfile.TemporaryDirectory() as scratch:
        corpus = write_squad_corpus(data, Path(scratch) / "corpus")
        index_folder(corpus, Path(scratch) / "index", embedder, progress=False)
        retriever = Retriever(Path(scratch) / "index", embedder=embedder)
        answer_with_details(retriever, generator, items[0].question, reader=readers["baseline"])  # warm every cache
        for number, item in enumerate(items):
            order = list(readers) if number % 2 == 0 else list(reversed(readers))
            for name in order:
                started = time.perf_counter()
                answer_with_details(retriever, generator, item.question, reader=readers[name])
                times[name].append(time.perf_counter() - started)
    p50 = {name: round(statistics.median(values), 3) for name, values in times.items()}
    report = {
        "questions": len(items),
        "p50_seconds": p50,
        "p50_ratio_current_over_baseline": round(p50["current"] / p50["baseline"], 3),
        "current_settings": str(settings["current"].path),
        "baseline_settings": str(args.baseline),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
