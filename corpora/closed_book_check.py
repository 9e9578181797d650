"""Is the demo corpus non-trivial without retrieval? Ask the bundled Gemma 3 270M every test question closed-book.

    python corpora/closed_book_check.py                      # generate and score (about 2 minutes on 2 cores)
    python corpora/closed_book_check.py --save out.jsonl     # keep the raw outputs; an existing file is reused and
                                                             # only questions missing from it are generated
    python corpora/closed_book_check.py --rescore out.jsonl  # score saved outputs again (after alias edits)

A short few-shot completion prompt with general-knowledge examples, greedy decoding, at most 16 new tokens, stop at
the newline. An answer counts as correct when a normalised alias occurs in it (rag.text.contains_answer). The issue
asks for at most 10% of the test questions to be answered correctly this way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

QA = Path(__file__).parent / "acme-qa.jsonl"

FEW_SHOT = (
    "Answer each question with a short phrase.\n\n"
    "Q: What is the capital of France?\nA: Paris\n\n"
    "Q: Who wrote the play Hamlet?\nA: William Shakespeare\n\n"
    "Q: In which year did the Second World War end?\nA: 1945\n\n"
    "Q: How many legs does a spider have?\nA: 8\n\n"
)


def prompt_for(question: str) -> str:
    return f"{FEW_SHOT}Q: {question}\nA:"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qa", type=Path, default=QA)
    parser.add_argument("--save", type=Path, help="write {id, output} lines here")
    parser.add_argument("--rescore", type=Path, help="score outputs saved with --save instead of generating")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rag.text import contains_answer

    questions = [json.loads(line) for line in args.qa.read_text().splitlines() if line.strip()]
    test = [q for q in questions if q.get("split", "test") == "test"]

    if args.rescore:
        saved = {r["id"]: r["output"] for r in map(json.loads, args.rescore.read_text().splitlines())}
        outputs = [saved[q["id"]] for q in test]
    else:
        saved = {}
        if args.save and args.save.is_file():
            saved = {r["id"]: r["output"] for r in map(json.loads, args.save.read_text().splitlines())}
        missing = [q for q in test if q["id"] not in saved]
        if missing:
            from rag.generation import load_generator

            generator = load_generator()
            started = time.perf_counter()
            for q in missing:
                output = generator.generate([prompt_for(q["question"])], max_new_tokens=16, stop=("\n",))[0]
                saved[q["id"]] = output.strip()
            print(f"generated {len(missing)} answers in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        outputs = [saved[q["id"]] for q in test]
        if args.save:
            args.save.write_text(
                "".join(json.dumps({"id": q["id"], "output": o}) + "\n" for q, o in zip(test, outputs))
            )

    answerable = [(q, o) for q, o in zip(test, outputs) if q["answers"]]
    hits = [(q, o) for q, o in answerable if any(contains_answer(o, a) for a in q["answers"])]
    for q, o in hits:
        print(f"  correct: {q['id']} {q['question']!r} -> {o!r}")
    print(
        f"closed-book: {len(hits)} of {len(test)} test questions answered correctly ({len(hits) / len(test):.1%}); "
        f"{len(hits)} of {len(answerable)} answerable ({len(hits) / len(answerable):.1%}); "
        f"unanswerable ones never count as correct (the prompt has no way to abstain)"
    )
    return 0 if len(hits) <= 0.10 * len(test) else 1


if __name__ == "__main__":
    raise SystemExit(main())
