"""A deterministic generated corpus for the benchmarks: same seed -> same bytes, no network, no model.

    python -m eval.corpus_gen OUT_DIR [--docs 2000] [--seed 0]

About 1 KB of English-like text per document (2,000 documents -> about 2 MB), spread over folders, mixing plain
``.txt`` and Markdown with headings, so the chunker sees paragraphs, headings and sentences of varied length.
The text is a seeded mix of a fixed vocabulary; it is not meant to be read, only to cost what real text costs.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

_NOUNS = (
    "sensor buoy survey vessel report invoice contract policy budget forecast salinity current turbine cable "
    "mooring battery firmware release audit meeting customer supplier warranty shipment calibration depth "
    "pressure station network dashboard quarter region office engineer manager team project schedule risk "
    "permit harbour coastline inspection sample laboratory dataset archive ticket incident handbook benefit "
    "expense travel allowance payroll pension hiring review roadmap prototype antenna modem satellite grid"
).split()
_VERBS = (
    "measures records approves reviews ships delays replaces calibrates reports exceeds reduces extends "
    "requires confirms schedules installs monitors tracks updates summarises covers lists allocates"
).split()
_ADJS = (
    "quarterly annual northern southern coastal offshore revised preliminary final internal external "
    "critical minor routine urgent new legacy regional national shared restricted public seasonal"
).split()
_NAMES = "Halvorsen Tidewater Brekke Oslo Bergen Tromsø Aalesund Stavanger Nordic Fjord Atlantic Skagerrak".split()
_FOLDERS = ("ops", "finance", "sales", "engineering", "hr", "legal", "research", "archive")


def _sentence(rng: random.Random) -> str:
    words = [
        rng.choice(_ADJS).capitalize(),
        rng.choice(_NOUNS),
        rng.choice(_VERBS),
        "the",
        rng.choice(_ADJS),
        rng.choice(_NOUNS),
    ]
    for _ in range(rng.randint(0, 8)):
        pick = rng.random()
        if pick < 0.15:
            words.append(rng.choice(_NAMES))
        elif pick < 0.25:
            words.append(str(rng.randint(2, 9999)))
        elif pick < 0.45:
            words.append(rng.choice(("for", "in", "with", "after", "before", "of", "by", "at")))
        else:
            words.append(rng.choice(_NOUNS))
    return " ".join(words) + rng.choice((".", ".", ".", "!", "?"))


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 7)))


def document(rng: random.Random, markdown: bool, target_bytes: int) -> str:
    parts: list[str] = []
    if markdown:
        parts.append(f"# {rng.choice(_ADJS).capitalize()} {rng.choice(_NOUNS)} {rng.choice(_NOUNS)}")
    size = 0
    while size < target_bytes:
        if markdown and rng.random() < 0.25:
            heading = f"## {rng.choice(_ADJS).capitalize()} {rng.choice(_NOUNS)}"
            parts.append(heading)
            size += len(heading)
        paragraph = _paragraph(rng)
        parts.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(parts) + "\n"


def generate(out_dir: Path, n_docs: int = 2000, seed: int = 0, mean_bytes: int = 850) -> list[Path]:
    """Write ``n_docs`` documents under ``out_dir``; returns their paths in order. Deterministic in ``seed``."""
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    paths: list[Path] = []
    for i in range(n_docs):
        markdown = rng.random() < 0.4
        folder = out_dir / _FOLDERS[i % len(_FOLDERS)]
        folder.mkdir(parents=True, exist_ok=True)
        target = int(rng.uniform(0.4, 1.6) * mean_bytes)
        path = folder / f"doc-{i:05d}.{'md' if markdown else 'txt'}"
        path.write_text(document(rng, markdown, target), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.corpus_gen", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = generate(args.out, args.docs, args.seed)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} documents, {total / 1e6:.2f} MB, under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
