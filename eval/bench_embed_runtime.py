"""Embedding runtimes on one CPU node: the embedder's OpenVINO and torch paths against ONNX Runtime (issue 18, part 3).

    pip install onnxruntime onnx              # measurement only (the bench extra); openvino is a dependency
    nice -n 10 python -m eval.bench_embed_runtime [--squad ../shared/data/squad2/dev-2articles.json] [--rounds 10]

The texts are the SQuAD sample's chunks, built as ``index_folder`` builds them (``eval.bench_roofline.squad_chunks``:
our chunker, one document per article, the title line that ingest embeds). Every variant embeds them as ingest does:
calls of ``EMBED_BATCH`` chunks, each sorted by length and cut into batches of ``CPU_BATCH``. The variants run in
alternating rounds in one process (order rotated each round), so drift on a shared machine hits each alike; chunks/s
is the median over rounds.

Variants: the product's default embedder first (``ingest.embedding.load_embedder``: OpenVINO on a CPU since
2026-12-06), torch bfloat16 and float32, and the same MiniLM exported with ``torch.onnx.export`` and run by ONNX
Runtime in float32 (as exported, and after ``onnxruntime.transformers``' BERT fusions), ONNX Runtime after
``quantize_dynamic`` (int8 weights, activations quantised per batch; VNNI is used where the CPU has it: with its
defaults, and MatMul-only per channel), OpenVINO on that ONNX graph in float32 (and in bfloat16 where that is not
the default already), and OpenVINO after NNCF's static int8 quantisation (``nncf.quantize``, transformer mode, the
mixed preset), calibrated on chunks of the SQuAD training pool's first ten articles, never on the measured ones:
every linear layer, without the FFN down-projections, and the FFN up-projections only. The ONNX graph returns the
last hidden state; mean pooling over the attention mask and L2 normalisation follow in numpy, as in the
sentence-transformers pipeline of all-MiniLM-L6-v2. A runtime that is not installed, or fails, is logged as skipped.
Ratios are to the first row, both of the medians and, robust to load drift, the median of each round's own ratio
("paired").

Quality: recall@10 against the float32 torch index, with the SQuAD questions as queries embedded by the same variant,
by exact inner product over the normalised vectors. The issue's bar: a variant is kept only if recall@10 >= 0.99.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eval.reader_data import DEFAULT_POOL  # the SQuAD training pool: calibration for the static int8 rows
from ingest.embedding_openvino import batch_feed, export_openvino, graph_embedder, openvino_runner

INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the exported ONNX graph's, in order

RECALL_BAR = 0.99
DEFAULT_SQUAD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad2" / "dev-2articles.json"
CALIBRATION_ARTICLES = 10
# NNCF ignored scopes (regular expressions over OpenVINO's node names for the converted MiniLM); None quantises all
INT8_SCOPES = {
    "every linear layer": None,
    "without FFN down-projections": r".*\.output\.dense/aten::linear/MatMul",
    "FFN up-projections only": r".*(attention\..*|layer\.\d+\.output\.dense/.*)",
}


def top_k(queries: np.ndarray, docs: np.ndarray, k: int) -> np.ndarray:
    """Row i: the indices of the k docs with the largest inner product with query i, best first (exact search)."""
    k = min(k, len(docs))
    return np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :k]


def recall_at_k(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over queries of |reference top-k ∩ candidate top-k| / k, for two (queries, k) arrays of doc indices."""
    k = reference.shape[1]
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(reference, candidate)]))


def export_onnx(embedder, path: Path) -> None:
    """The encoder of a SentenceTransformer as ONNX: (input_ids, attention_mask, token_type_ids) -> last hidden state,
    batch and sequence dynamic."""
    import torch

    encoder = embedder.model[0].auto_model

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    sample = embedder.model.tokenizer(["an example", "a slightly longer example"], padding=True, return_tensors="pt")
    wrapper = LastHidden().eval()
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            tuple(sample[name] for name in INPUTS),
            str(path),
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "last_hidden_state")},
            opset_version=17,
            dynamo=False,
        )
    encoder.eval()  # export restores the wrapper's mode on every submodule; the torch rows need eval mode


def _ort_runner(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)[0]


def _nncf_int8_runner(graph: Path, calibration: list[dict], ignored: str | None, out: Path, threads: int):
    """OpenVINO on ``graph`` after NNCF's static int8 quantisation, calibrated on ``calibration`` (feeds)."""
    import nncf
    import openvino as ov

    scope = nncf.IgnoredScope(patterns=[ignored]) if ignored else None
    quantised = nncf.quantize(
        ov.Core().read_model(str(graph)),
        nncf.Dataset(calibration),
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration),
        ignored_scope=scope,
    )
    ov.save_model(quantised, str(out))
    return openvino_runner(out, threads, "bf16")


def build_variants(
    workdir: Path, calibration_texts: list[str] = (), log=print
) -> list[tuple[str, Callable[[list[str]], np.ndarray]]]:
    """(label, embed) for every runtime that loads here; the first is the product's default, the second the
    float32 torch reference. ``calibration_texts`` feed the static int8 rows (none: no such rows)."""
    import torch

    from ingest.embedding import CPU_BATCH, load_embedder

    default = load_embedder(progress=False)
    variants = [(f"{default.runtime} {default.dtype} (default)", default.embed)]
    if default.runtime != "torch" and default.dtype != "float32":  # the torch path ingest used before OpenVINO
        variants.append((f"torch {default.dtype}", load_embedder(progress=False, runtime="torch").embed))
    fp32 = load_embedder(progress=False, dtype="float32", runtime="torch")
    variants.append(("torch float32", fp32.embed))
    threads = torch.get_num_threads()
    tokenizer, max_tokens = fp32.model.tokenizer, fp32.max_tokens
    onnx_path = workdir / "minilm.onnx"
    try:
        export_onnx(fp32, onnx_path)
    except Exception as err:  # noqa: BLE001 - the report names why the ONNX rows are missing
        log(f"  ONNX export failed: {type(err).__name__}: {err}")
        return variants

    def add(label: str, make_runner: Callable[[], Callable[[dict], np.ndarray]]) -> None:
        try:
            runner = make_runner()
        except Exception as err:  # noqa: BLE001 - a runtime that is missing or fails is a skipped row, named
            log(f"  skipped {label}: {type(err).__name__}: {err}")
            return
        variants.append((label, graph_embedder(runner, tokenizer, max_tokens, CPU_BATCH)))

    add("onnxruntime float32", lambda: _ort_runner(onnx_path, threads))

    def fused_runner():
        from onnxruntime.transformers import optimizer

        config = fp32.model[0].auto_model.config
        fused = workdir / "minilm-fused.onnx"
        model = optimizer.optimize_model(
            str(onnx_path), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
        )
        log(f"  onnxruntime fusions: {model.get_fused_operator_statistics()}")
        model.save_model_to_file(str(fused))
        return _ort_runner(fused, threads)

    # onnxruntime.transformers' offline fusions (attention, layer norm, GELU), what its BERT guide recommends
    add("onnxruntime float32 fused", fused_runner)

    def int8_runner(name: str, **options):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantised = workdir / f"minilm-{name}.onnx"
        quantize_dynamic(str(onnx_path), str(quantised), weight_type=QuantType.QInt8, **options)
        return _ort_runner(quantised, threads)

    # quantize_dynamic's defaults (every MatMul, Gather, Attention...; one scale per tensor), then the usual
    # accuracy-minded setting for transformers: MatMul only (the embedding tables stay float), one scale per channel.
    add("onnxruntime int8 dynamic", lambda: int8_runner("int8"))
    add(
        "onnxruntime int8 matmul/channel",
        lambda: int8_runner("int8-matmul", per_channel=True, op_types_to_quantize=["MatMul"]),
    )
    add("openvino float32", lambda: openvino_runner(onnx_path, threads, "f32"))
    if default.runtime != "openvino" or default.dtype != "bfloat16":
        add("openvino bf16", lambda: openvino_runner(onnx_path, threads, "bf16"))
    if calibration_texts:
        feeds = [
            batch_feed(tokenizer, calibration_texts[start : start + CPU_BATCH], max_tokens)
            for start in range(0, len(calibration_texts), CPU_BATCH)
        ]
        # the product's own OpenVINO graph (its node names are what INT8_SCOPES matches), not the ONNX export
        graph = export_openvino(fp32.model, workdir / "openvino")
        for i, (scope_label, ignored) in enumerate(INT8_SCOPES.items()):
            out = workdir / f"minilm-nncf-{i}.xml"
            make = functools.partial(_nncf_int8_runner, graph, feeds, ignored, out, threads)
            add(f"openvino int8 nncf, {scope_label}", make)
    return variants


def environment() -> dict:
    """The CPU's int8/bf16 instructions (what the runtimes pick kernels by) and the runtimes' versions."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    wanted = sorted(f for f in flags if f in ("avx512_vnni", "avx512_bf16", "avx_vnni") or f.startswith("amx_"))
    versions = {}
    for package in ("torch", "onnxruntime", "openvino"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"cpu_flags": wanted, "cpu_count": os.cpu_count(), "versions": versions}


def ingest_batches(embed: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
    """Embed as ``ingest.sync`` does: calls of EMBED_BATCH chunks in document order."""
    from ingest.sync import EMBED_BATCH

    return np.concatenate([embed(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)])


def run(squad_json: Path, rounds: int = 10, pool: Path | None = DEFAULT_POOL, log=print) -> dict:
    from eval.bench_roofline import squad_chunks

    env = environment()
    log(f"  {env}")
    texts, questions = squad_chunks(squad_json)
    log(f"  {len(texts)} chunks, {len(questions)} questions, load average {os.getloadavg()}")
    calibration = squad_chunks(pool, articles=CALIBRATION_ARTICLES)[0] if pool and pool.is_file() else []
    with tempfile.TemporaryDirectory() as tmp:
        variants = build_variants(Path(tmp), calibration, log)
        for _, embed in variants:
            embed(texts[:16])  # warm up: first-call allocations, OpenVINO's shape compilation
        times: dict[str, list[float]] = {label: [] for label, _ in variants}
        vectors = {}
        for r in range(rounds):
            # alternate, and rotate the order each round, so no variant always runs first or after the same one
            for label, embed in variants[r % len(variants) :] + variants[: r % len(variants)]:
                start = time.perf_counter()
                vectors[label] = ingest_batches(embed, texts)
                times[label].append(time.perf_counter() - start)
            log(f"  round {r + 1}/{rounds} done, load average {os.getloadavg()[0]:.2f}")
        queries = {label: embed(questions) for label, embed in variants}
    reference_label = next(label for label, _ in variants if label.startswith("torch float32"))
    reference = top_k(queries[reference_label], vectors[reference_label], 10)
    base_rate = len(texts) / statistics.median(times[variants[0][0]])
    rows = []
    for label, _ in variants:
        rate = len(texts) / statistics.median(times[label])
        # the same round's default against this variant: robust to the load changing between rounds
        paired = statistics.median(d / t for d, t in zip(times[variants[0][0]], times[label]))
        recall = recall_at_k(reference, top_k(queries[label], vectors[label], 10))
        row = {
            "variant": label,
            "chunks_per_s": rate,
            "chunks_per_s_rounds": [len(texts) / t for t in times[label]],
            "ratio_to_default": rate / base_rate,
            "ratio_to_default_paired": paired,
            "recall_at_10": recall,
            "max_abs_diff_vs_fp32": float(np.abs(vectors[label] - vectors[reference_label]).max()),
            "meets_bar": recall >= RECALL_BAR,
        }
        rows.append(row)
        log(
            f"  {label:<48} {rate:7.1f} chunks/s  {row['ratio_to_default']:5.2f}x (paired {paired:4.2f}x)"
            f"  recall@10 {recall:.3f}"
            f"  max|diff| {row['max_abs_diff_vs_fp32']:.1e}"
        )
    return {
        "texts": len(texts),
        "questions": len(questions),
        "rounds": rounds,
        "recall_bar": RECALL_BAR,
        "environment": env,
        "load_average_end": os.getloadavg(),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL, help="SQuAD file: its first articles calibrate int8")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args()
    result = run(args.squad, args.rounds, args.pool)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
