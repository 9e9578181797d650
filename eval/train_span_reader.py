"""Train the span model (``rag.span_reader``): the bundled MiniLM fine-tuned as a SQuAD 2.0 reader (start and end
logits per token, the [CLS] pair as the "no answer" score) on the shared pool's learning articles: never the
calibration articles the answerability gate is fitted on, nor the held-out ones (``eval.reader_data.split_articles``).

    python -m eval.train_span_reader [--out rag/data/span_reader] [--epochs 3] [--seed 0]

The word embeddings and the first layer stay frozen, so the artifact is only the rest (loaded on top of the bundled
MiniLM), under the 20 MB budget in float16. Its ``span_reader.json`` records the command, seed, training time and
precision (bfloat16 autocast where the hardware has bf16, float32 elsewhere).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from rag.span_reader import encode_windows

from .lora import bf16_autocast
from .reader_data import DEFAULT_POOL, load_pool, split_articles


def pool_examples(data: dict, titles: list[str]) -> list[dict]:
    """One example per question: its paragraph, and the character offsets of its first answer (None: unanswerable)."""
    examples = []
    for article in data["data"]:
        if article["title"] not in titles:
            continue
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answer = None
                if qa["answers"] and not qa.get("is_impossible"):
                    first = qa["answers"][0]
                    answer = (first["answer_start"], first["answer_start"] + len(first["text"]))
                examples.append(
                    {
                        "question": qa["question"],
                        "context": paragraph["context"],
                        "answer": answer,
                        "aliases": [a["text"] for a in qa["answers"]],
                        "title": article["title"],
                    }
                )
    return examples


def features(tokenizer, examples: list[dict]) -> list[dict]:
    """Windows of question + paragraph, each labelled with its answer's token span or (0, 0) for "no answer"."""
    encoded = encode_windows(tokenizer, [e["question"] for e in examples], [e["context"] for e in examples])
    rows = []
    for i, ids in enumerate(encoded["input_ids"]):
        example = examples[encoded["overflow_to_sample_mapping"][i]]
        offsets = encoded["offset_mapping"][i]
        sequence = encoded.sequence_ids(i)
        start = end = 0
        if example["answer"]:
            a, b = example["answer"]
            context_tokens = [t for t, s in enumerate(sequence) if s == 1]
            if offsets[context_tokens[0]][0] <= a and offsets[context_tokens[-1]][1] >= b:
                start = next(t for t in context_tokens if offsets[t][1] > a)
                end = next(t for t in reversed(context_tokens) if offsets[t][0] < b)
        rows.append({"input_ids": ids, "token_type_ids": encoded["token_type_ids"][i], "start": start, "end": end})
    return rows


def batches(rows: list[dict], size: int, rng: random.Random):
    """Batches of similar length (less padding), in a random order."""
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i]["input_ids"]), rng.random()))
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    rng.shuffle(groups)
    for group in groups:
        yield [rows[i] for i in group]


def collate(group: list[dict]):
    import torch

    width = max(len(r["input_ids"]) for r in group)
    ids = torch.zeros((len(group), width), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for row, r in enumerate(group):
        n = len(r["input_ids"])
        ids[row, :n] = torch.tensor(r["input_ids"])
        types[row, :n] = torch.tensor(r["token_type_ids"])
        mask[row, :n] = 1
    starts = torch.tensor([r["start"] for r in group])
    ends = torch.tensor([r["end"] for r in group])
    return ids, types, mask, starts, ends


def train(
    model, rows: list[dict], epochs: int, seed: int, device: str, autocast: bool, batch_size: int = 16, lr: float = 1e-4
) -> list[float]:
    """``device`` and ``autocast`` (bfloat16 or not) are decided once by the caller, who also records them."""
    import torch

    model.to(device)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    steps = epochs * ((len(rows) + batch_size - 1) // batch_size)
    warmup = max(1, steps // 10)  # at least one step, so that a tiny run has a schedule too
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    model.train()
    losses, step, started = [], 0, time.perf_counter()
    for epoch in range(epochs):
        for group in batches(rows, batch_size, rng):
            ids, types, mask, starts, ends = (t.to(device) for t in collate(group))
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
                out = model(
                    input_ids=ids, token_type_ids=types, attention_mask=mask, start_positions=starts, end_positions=ends
                )
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            losses.append(out.loss.item())
            step += 1
            if step % 50 == 0:
                recent = sum(losses[-50:]) / 50
                print(
                    f"epoch {epoch + 1} step {step}/{steps} loss {recent:.3f} {time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    model.eval().to("cpu")
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.train_span_reader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--out", type=Path, default=None, help="Default: the shipped artifact, rag/data/span_reader.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from ingest.common import best_device
    from ingest.embedding import default_embedder_path
    from rag.span_reader import ARTIFACT_DIR, save_trained_weights

    data = load_pool(args.pool)
    split = split_articles(data, args.seed)
    fit_titles = split.learn
    base = default_embedder_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForQuestionAnswering.from_pretrained(base)
    # Frozen, so the artifact need not carry them (it loads on top of the bundled MiniLM): 20 MB budget.
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    for parameter in model.bert.encoder.layer[0].parameters():
        parameter.requires_grad_(False)
    rows = features(tokenizer, pool_examples(data, fit_titles))
    print(f"{len(rows)} windows from {len(fit_titles)} articles", file=sys.stderr)
    device = best_device()  # a GPU when there is one
    autocast = bf16_autocast(device.split(":")[0])
    started = time.perf_counter()
    losses = train(model, rows, args.epochs, args.seed, device, autocast, lr=args.lr)
    seconds = time.perf_counter() - started
    record = {
        "base": "sentence-transformers/all-MiniLM-L6-v2 (bundled)",
        "data": f"SQuAD 2.0 pool {args.pool.name}, learning articles: {', '.join(fit_titles)}",
        "license": "trained on SQuAD 2.0 (Rajpurkar et al. 2018), CC BY-SA 4.0",
        "command": "python -m eval.train_span_reader " + " ".join(argv if argv is not None else sys.argv[1:]),
        "windows": len(rows),
        "epochs": args.epochs,
        "seed": args.seed,
        "learning_rate": args.lr,
        "training_seconds": round(seconds),
        "threads": torch.get_num_threads(),
        "precision": "bfloat16 autocast" if autocast else "float32",
        "final_loss": round(sum(losses[-50:]) / 50, 4),
    }
    save_trained_weights(model, args.out or ARTIFACT_DIR, record)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
