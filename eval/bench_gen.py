"""Generation benchmark: load time (cold GGUF conversion, cached), time to first token, decode tokens/s against
the memory-bandwidth bound, and end-to-end answer latency with the default model.

Bandwidth bound: a greedy decode step reads every weight once (Gemma ties its 262k x 640 embedding to the LM head,
which a step multiplies in full), so tokens/s <= copy bandwidth / weight bytes. Copy bandwidth is the best of a
few ``np.copyto`` of 512 MiB (bytes read + bytes written per second).

    python -m eval.bench_gen --cold   # run alone: converts the GGUF in a fresh cache dir (about 80 s on 2 cores)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def copy_bandwidth_gbs(mib: int = 512, repeats: int = 4) -> float:
    src = np.ones(mib << 18, dtype=np.float32)  # mib MiB
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


_LOAD_PARTS = """
import sys, time
if "--after-embedder" in sys.argv:  # as in `rag ask`: the embedder has already imported torch and transformers
    from ingest.embedding import load_embedder
    load_embedder(progress=False).embed(["warm up"])
started = time.perf_counter()
import torch, transformers
from transformers import AutoModelForCausalLM
from transformers.models.gemma3 import modeling_gemma3  # otherwise imported inside from_pretrained
from rag.generation import load_generator
imported = time.perf_counter()
spans = []
original = AutoModelForCausalLM.from_pretrained.__func__
def timed(cls, *args, **kwargs):
    spans.append(time.perf_counter())
    try:
        return original(cls, *args, **kwargs)
    finally:
        spans.append(time.perf_counter())
AutoModelForCausalLM.from_pretrained = classmethod(timed)
load_generator()
done = time.perf_counter()
print("LOAD_S", done - started, imported - started, spans[0] - imported, spans[1] - spans[0], done - spans[1])
"""


def _load_in_subprocess(cache_home: str | None, after_embedder: bool = False) -> dict:
    """Seconds for ``load_generator()`` in a fresh process (with XDG_CACHE_HOME=cache_home if given), in parts;
    with ``after_embedder``, once the process has loaded the embedder, which is what `rag ask` pays for it.

    ``imports``: torch, transformers and the Gemma 3 modeling code (which ``from_pretrained`` would import itself);
    ``tokenizer``: everything before the weights (mostly the tokenizer); ``weights``: ``from_pretrained``; ``rest``:
    the model's ``.to(device).eval()``, the generator and, on a cold or first bf16 load, writing the bf16 copy.
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if cache_home:
        env["XDG_CACHE_HOME"] = cache_home
    command = [sys.executable, "-c", _LOAD_PARTS] + (["--after-embedder"] if after_embedder else [])
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("LOAD_S"):
            total, imports, tokenizer, weights, rest = map(float, line.split()[1:])
            return {
                "total_s": total,
                "imports_s": imports,
                "tokenizer_s": tokenizer,
                "weights_s": weights,
                "rest_s": rest,
            }
    raise RuntimeError(f"generator load failed: {done.stderr.strip().splitlines()[-1:]}")


def _parts(load: dict) -> str:
    return (
        f"{load['total_s']:.1f} s (imports {load['imports_s']:.2f}, tokenizer {load['tokenizer_s']:.2f}, "
        f"weights {load['weights_s']:.2f}, rest {load['rest_s']:.2f})"
    )


def decode_speed(generator, prompt: str, new_tokens: int = 32) -> dict:
    """Time to first token (prefill + one step) and steady decode tokens/s, greedy, no stop sequences."""
    import torch

    model, tokenizer = generator.model, generator.tokenizer
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(generator.device)
    cache_arg = generator._cache_arg
    with torch.inference_mode():
        start = time.perf_counter()
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        token = int(out.logits[0, -1].argmax())
        ttft = time.perf_counter() - start
        past = out.cache if cache_arg == "cache" else out.past_key_values
        start = time.perf_counter()
        for _ in range(new_tokens):
            out = model(input_ids=torch.tensor([[token]]), use_cache=True, logits_to_keep=1, **{cache_arg: past})
            past = out.cache if cache_arg == "cache" else out.past_key_values
            token = int(out.logits[0, -1].argmax())
        decode_s = time.perf_counter() - start
    return {"prompt_tokens": int(ids.shape[1]), "ttft_s": ttft, "decode_tokens_per_s": new_tokens / decode_s}


def answer_latency(generator, corpus: Path, qa_file: Path, n: int, log=print) -> dict:
    from ingest.embedding import load_embedder
    from ingest.sync import index_folder
    from rag.answer import answer_question
    from rag.retrieval import Retriever

    questions = []
    for line in qa_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            if item.get("split", "test") == "test" and not item.get("restricted"):
                questions.append(item["question"])
    questions = questions[:n]
    embedder = load_embedder(progress=False)
    with tempfile.TemporaryDirectory(prefix="bench-answer-") as scratch:
        index_folder(corpus, Path(scratch) / "index", embedder, rebuild=True, progress=False)
        retriever = Retriever(Path(scratch) / "index", embedder)
        answer_question(retriever, generator, questions[0])  # warm up (prefix caches, first-call allocations)
        times, stages, abstained = [], [], 0
        for question in questions:
            start = time.perf_counter()
            answer = answer_question(retriever, generator, question)
            times.append(time.perf_counter() - start)
            stages.append(answer.timings)
            abstained += bool(answer.abstained)
        retriever.close()
    return {
        "questions": len(times),
        "p50_s": float(np.percentile(times, 50)),
        "p95_s": float(np.percentile(times, 95)),
        "retrieval_p50_s": float(np.median([t["retrieval"] for t in stages])),
        "generation_p50_s": float(np.median([t["generation"] for t in stages])),
        "abstained": abstained,
    }


def run(corpus: Path | None, qa_file: Path | None, quick: bool = False, cold: bool = False, log=print) -> dict:
    import torch

    result: dict = {"threads": torch.get_num_threads()}
    if cold:
        with tempfile.TemporaryDirectory(prefix="bench-cold-") as cache_home:
            cold_load = _load_in_subprocess(cache_home)
            result["load_cold_s"] = cold_load["total_s"]
            log(f"  cold load (GGUF -> safetensors): {_parts(cold_load)}")
    if not quick:
        _load_in_subprocess(None)  # make sure the cache exists (and is in the page cache) before timing
    repeats = 1 if quick else 3
    for key, after_embedder, label in (
        ("load_cached", False, "cached load (fresh process, median of {n})"),
        ("load_after_embedder", True, "cached load after the embedder, as in `rag ask` (median of {n})"),
    ):
        runs = [_load_in_subprocess(None, after_embedder) for _ in range(repeats)]
        parts = {part: float(np.median([run[part] for run in runs])) for part in runs[0]}  # median of each part
        result[f"{key}_s"] = parts["total_s"]
        result[f"{key}_parts"] = parts
        log(f"  {label.format(n=repeats)}: {_parts(parts)}")

    from rag.generation import load_generator

    generator = load_generator()
    weights = sum(p.numel() * p.element_size() for p in generator.model.parameters())
    bandwidth = copy_bandwidth_gbs()
    prompt = (
        "Passages:\n[1] Halvorsen Tidewater Instruments was founded in 2009 in Bergen by Ragna Halvorsen. "
        "It builds ocean sensors and moored buoys for harbour authorities.\n"
        "Question: In which year was the company founded?\nAnswer:"
    )
    speed = decode_speed(generator, prompt, 16 if quick else 32)
    result.update(speed)
    result["weight_bytes"] = weights
    result["copy_bandwidth_gbs"] = bandwidth
    result["bound_tokens_per_s"] = bandwidth * 1e9 / weights
    result["of_bound"] = speed["decode_tokens_per_s"] / result["bound_tokens_per_s"]
    log(
        f"  TTFT {speed['ttft_s'] * 1e3:.0f} ms ({speed['prompt_tokens']} prompt tokens); decode "
        f"{speed['decode_tokens_per_s']:.1f} tok/s vs bound {result['bound_tokens_per_s']:.1f} tok/s "
        f"({weights / 1e9:.2f} GB of weights at {bandwidth:.1f} GB/s)"
    )
    if corpus and qa_file and corpus.is_dir() and qa_file.is_file():
        result["answer"] = answer_latency(generator, corpus, qa_file, 3 if quick else 15, log)
        answer = result["answer"]
        log(
            f"  answer latency p50 {answer['p50_s']:.2f} s, p95 {answer['p95_s']:.2f} s (p50 retrieval "
            f"{answer['retrieval_p50_s'] * 1e3:.0f} ms, reading {answer['generation_p50_s'] * 1e3:.0f} ms)"
        )
    else:
        result["answer"] = {"skipped": "demo corpus or its QA set not found"}
    return result


if __name__ == "__main__":
    from corpora import bundled_corpus

    print(json.dumps(run(bundled_corpus(), bundled_corpus().parent / "acme-qa.jsonl", cold="--cold" in sys.argv)))
