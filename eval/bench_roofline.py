"""Embedding roofline: how close MiniLM embedding comes to this machine's float32 matmul peak, and which levers pay.

Peak: the best of several ``torch.matmul`` of 2048 x 2048 float32 matrices (2 n^3 FLOPs each).

Achieved: useful FLOPs / wall time, counting per sequence of n tokens (specials included, padding excluded)
    FLOPs = n * 2 * P + layers * 4 * n^2 * d
where P = layers * (4 d^2 + 2 d d_ff) are the encoder's weight-matrix parameters (the multiply-adds of the Q, K, V,
O and feed-forward projections; embeddings, biases, layer norms and pooling are ignored as lower order), and the
second term is attention (Q K^T and attention x V, 2 n d each per layer per token). MiniLM-L6: d=384, d_ff=1536,
6 layers -> P = 10.6 M, about 21 MFLOP per token plus attention.

Levers, each on the same texts (the SQuAD sample's chunks, exactly as ``index_folder`` embeds them):
batch size, length-sorted vs arrival-order batches, torch threads, int8 dynamic quantisation of every
``nn.Linear`` (``torch.ao.quantization.quantize_dynamic``) and bfloat16 weights (what ``ingest.embedding`` uses where
the CPU multiplies bf16 natively). A lever that changes the vectors must keep recall@10 >= 0.95 against the float32
index on the SQuAD questions. The baseline is float32, whatever the machine would pick by default.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

RECALL_FLOOR = 0.95


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    import torch

    a = torch.randn(n, n, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, dtype=getattr(torch, dtype))
    torch.matmul(a, b)  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def model_shape(model) -> dict:
    config = model[0].auto_model.config
    return {
        "layers": int(config.num_hidden_layers),
        "d": int(config.hidden_size),
        "d_ff": int(config.intermediate_size),
    }


def useful_flops(lengths: list[int], shape: dict) -> float:
    d, d_ff, layers = shape["d"], shape["d_ff"], shape["layers"]
    params = layers * (4 * d * d + 2 * d * d_ff)
    n = np.asarray(lengths, dtype=np.float64)
    return float((n * 2 * params + layers * 4 * n * n * d).sum())


def squad_chunks(
    squad_json: Path, limit: int | None = None, articles: int | None = None
) -> tuple[list[str], list[str]]:
    """(texts to embed, questions) from a SQuAD file (``.json`` or ``.json.gz``): our chunker over one document per
    article, of the first ``articles`` (None: all)."""
    from eval.reader_data import load_pool
    from ingest.chunking import Chunker
    from ingest.embedding import load_embedder
    from ingest.sync import embedding_text
    from ingest.types import LoadedDocument

    data = load_pool(squad_json)["data"][:articles]
    embedder = load_embedder(progress=False)
    chunker = Chunker(embedder.token_len)
    texts, questions = [], []
    for article in data:
        source = f"{article['title']}.txt"
        text = "\n\n".join(p["context"] for p in article["paragraphs"])
        doc = LoadedDocument(source=source, text=text, pages=[])
        texts += [embedding_text(source, c) for c in chunker.split(doc)]
        questions += [q["question"] for p in article["paragraphs"] for q in p["qas"]]
    if limit:
        questions = questions[:limit]
    return texts, questions


def _encode(model, texts: list[str], batch_size: int, sort: bool) -> np.ndarray:
    if sort:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True).astype(
            np.float32
        )
    # Arrival order: each call holds one batch, so nothing is sorted across batches.
    parts = [
        model.encode(texts[i : i + batch_size], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        for i in range(0, len(texts), batch_size)
    ]
    return np.concatenate(parts).astype(np.float32)


def _recall_at_10(doc_ref, q_ref, doc_new, q_new) -> float:
    k = min(10, len(doc_ref))
    ref = np.argsort(-(q_ref @ doc_ref.T), axis=1)[:, :k]
    new = np.argsort(-(q_new @ doc_new.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref, new)]))


def run(squad_json: Path, quick: bool = False, log=print) -> dict:
    import torch

    from ingest.embedding import load_embedder

    peak = matmul_gflops(repeats=3 if quick else 5)
    peak_bf16 = matmul_gflops(repeats=3 if quick else 5, dtype="bfloat16")
    threads = torch.get_num_threads()
    log(f"  matmul peak: {peak:.1f} GFLOP/s fp32, {peak_bf16:.1f} bf16 (2048^3, {threads} threads)")
    texts, questions = squad_chunks(squad_json, limit=100 if quick else None)
    if quick:
        texts = texts[:96]
    # the torch model itself is measured; the reference vectors and the baseline are float32
    embedder = load_embedder(progress=False, dtype="float32", runtime="torch")
    model = embedder.model
    shape = model_shape(model)
    tokenizer = model.tokenizer
    lengths = [min(len(tokenizer(t, verbose=False)["input_ids"]), model.max_seq_length) for t in texts]
    flops = useful_flops(lengths, shape)
    model.encode(texts[:8])  # warm up

    reference_docs = _encode(model, texts, 32, True)
    reference_queries = _encode(model, questions, 32, True)

    variants = [
        ("baseline: sorted, batch 32", dict(batch_size=32, sort=True)),
        ("arrival order, batch 32", dict(batch_size=32, sort=False)),
        ("sorted, batch 8", dict(batch_size=8, sort=True)),
        ("sorted, batch 128", dict(batch_size=128, sort=True)),
        (f"sorted, batch 32, 1 thread (of {threads})", dict(batch_size=32, sort=True, threads=1)),
        ("int8 dynamic (Linear), sorted, batch 32", dict(batch_size=32, sort=True, model="int8")),
        ("bf16 weights, sorted, batch 8", dict(batch_size=8, sort=True, model="bf16")),
    ]
    if quick:
        variants = [v for v in variants if v[0] not in ("sorted, batch 8", "sorted, batch 128")]
    models = {"fp32": model}
    if any(opts.get("model") == "int8" for _, opts in variants):
        quantised = copy.deepcopy(model)
        quantised[0].auto_model = torch.ao.quantization.quantize_dynamic(
            quantised[0].auto_model, {torch.nn.Linear}, dtype=torch.qint8
        )
        quantised.encode(texts[:8])
        models["int8"] = quantised
    if any(opts.get("model") == "bf16" for _, opts in variants):
        models["bf16"] = copy.deepcopy(model).to(torch.bfloat16)
        models["bf16"].encode(texts[:8])
    # Round-robin over the variants, best time of each: on a shared CPU, drift then hits every variant alike.
    best = {label: float("inf") for label, _ in variants}
    vectors = {}
    for _ in range(2 if quick else 3):
        for label, opts in variants:
            if opts.get("threads"):
                torch.set_num_threads(opts["threads"])
            try:
                start = time.perf_counter()
                vectors[label] = _encode(models[opts.get("model", "fp32")], texts, opts["batch_size"], opts["sort"])
                best[label] = min(best[label], time.perf_counter() - start)
            finally:
                torch.set_num_threads(threads)
    rows = []
    for label, opts in variants:
        seconds = best[label]
        row = {
            "lever": label,
            "seconds": seconds,
            "chunks_per_s": len(texts) / seconds,
            "tokens_per_s": sum(lengths) / seconds,
            "gflops": flops / seconds / 1e9,
            # each precision against its own matmul peak
            "of_peak": flops / seconds / 1e9 / (peak_bf16 if opts.get("model") == "bf16" else peak),
        }
        if opts.get("model"):
            queries = _encode(models[opts["model"]], questions, 32, True)
            row["recall_at_10"] = _recall_at_10(reference_docs, reference_queries, vectors[label], queries)
        else:
            row["max_abs_diff"] = float(np.abs(vectors[label] - reference_docs).max())
        rows.append(row)
        log(
            f"  {label:<44} {row['chunks_per_s']:7.1f} chunks/s {row['tokens_per_s']:8.0f} tok/s "
            f"{row['gflops']:6.1f} GFLOP/s ({row['of_peak'] * 100:4.1f}% of peak)"
            + (f" recall@10 {row['recall_at_10']:.3f}" if "recall_at_10" in row else "")
        )
    base = rows[0]
    for row in rows:
        row["speedup"] = row["chunks_per_s"] / base["chunks_per_s"]
        row["kept"] = row is base or (row["speedup"] > 1.05 and row.get("recall_at_10", 1.0) >= RECALL_FLOOR)
    return {
        "matmul_gflops": peak,
        "matmul_gflops_bf16": peak_bf16,
        "threads": threads,
        "model": shape,
        "flops_per_token_formula": "2*layers*(4d^2+2d*d_ff) + 4*layers*n*d  (n = sequence length)",
        "texts": len(texts),
        "questions": len(questions),
        "mean_tokens": float(np.mean(lengths)),
        "recall_floor": RECALL_FLOOR,
        "rows": rows,
    }
