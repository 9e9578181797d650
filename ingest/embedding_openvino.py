"""The embedder on OpenVINO: the same sentence-transformers model, converted once and compiled for this CPU.

Measured in docs/scaling.md ("Embedding runtimes", 2 cores with AVX512-BF16): OpenVINO at the CPU's native precision
embeds MiniLM 1.27x faster than torch bfloat16 on the quietest run (2.1-3.7x under load), and its vectors keep
recall@10 0.994 against the float32 index (torch bfloat16: 0.993). It is the CPU default when the model is a plain
mean-pooled encoder; anything else, a GPU, or ``DOCRAG_EMBED_RUNTIME=torch`` keeps the torch path.

The export is cached per model (``cache_dir("embedders")``), written atomically, so a killed export never leaves a
half-written graph to be read later. It carries what the embedder needs besides the graph (``MANIFEST``), so once it
exists ``cached_openvino_embedder`` loads the embedder from it and the model's tokenizer alone: sentence-transformers
and the torch weights are never loaded, which takes a fresh process's embedder load from about 5 s to about 2 s.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .common import UsageError

RUNTIME_ENV = "DOCRAG_EMBED_RUNTIME"  # "torch" or "openvino"; unset: OpenVINO on a CPU where the model allows it
GRAPH = "encoder.xml"  # OpenVINO IR: the graph, with its float32 weights in encoder.bin beside it
MANIFEST = "embedder.json"  # beside the graph: the model's window (max_tokens) and vector size (dimension)
TOKENIZER = "tokenizer"  # beside the graph: the tokenizer sentence-transformers built, saved
EXPORT_LAYOUT = "3"  # part of the cache key: exports without the manifest and tokenizer are made again, once


def token_count(tokenizer, text: str) -> int:
    """``Embedder.token_len``: the model's tokens in ``text`` without special tokens, as the chunker counts them."""
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def sentence_dimension(model) -> int:
    """A SentenceTransformer's vector size (sentence-transformers 6 renamed the method)."""
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(dimension())


def batch_feed(tokenizer, batch: list[str], max_tokens: int) -> dict:
    """One batch as an exported encoder takes it: the tokenizer's inputs, padded, truncated to the window, int64."""
    encoded = tokenizer(batch, padding=True, truncation=True, max_length=max_tokens, return_tensors="np")
    return {name: encoded[name].astype(np.int64) for name in tokenizer.model_input_names}


def pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the real tokens, then L2-normalised: sentence-transformers' Pooling (mean) and Normalize modules."""
    mask = mask[..., None].astype(np.float32)
    vectors = (hidden.astype(np.float32) * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def graph_embedder(
    run_batch: Callable[[dict], np.ndarray],
    tokenizer,
    max_tokens: int,
    batch_size: int,
    progress: bool = False,
    parallel: int = 1,
) -> Callable[[list[str]], np.ndarray]:
    """``embed(texts)`` for an exported encoder, batched as ``SentenceTransformer.encode`` does: sorted by length
    (longest first), padded per batch, truncated to the model's window; vectors come back in the caller's order.
    ``parallel`` batches run at once (``run_batch`` must then be safe to call from that many threads)."""

    def embed(texts: list[str]) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        feeds = [
            batch_feed(tokenizer, [texts[i] for i in order[start : start + batch_size]], max_tokens)
            for start in range(0, len(texts), batch_size)
        ]
        if parallel > 1 and len(feeds) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(parallel, len(feeds))) as pool:
                states = list(_shown(pool.map(run_batch, feeds), len(feeds), progress))
        else:
            states = [run_batch(feed) for feed in _shown(feeds, len(feeds), progress)]
        vectors = np.concatenate([pooled(state, feed["attention_mask"]) for state, feed in zip(states, feeds)])
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    return embed


def _shown(items, total: int, progress: bool):
    if not progress or total < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc="Batches", unit="batch")


def export_openvino(model, folder: Path) -> Path:
    """The encoder of a float32 SentenceTransformer as OpenVINO IR (the tokenizer's inputs -> the last hidden state,
    batch and sequence dynamic), converted by OpenVINO from torch itself (no ONNX step), with its ``MANIFEST``.
    Written to a sibling folder and renamed into place, so a killed export leaves nothing that a later run would
    read. Returns the model file."""
    import json
    import shutil

    import openvino as ov
    import torch
    from transformers.utils import logging as hf_logging

    encoder = model[0].auto_model
    names = tuple(model.tokenizer.model_input_names)

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # BERT's names; the tokenizer's subset
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.encoder(**{k: v for k, v in inputs.items() if v is not None}).last_hidden_state

    sample = model.tokenizer(["an example", "a slightly longer example"], padding=True, return_tensors="pt")
    partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # The tracer warns about branches it freezes (an encoder's causal flag and padding length, constant for it), and
    # transformers logs about the loss it would use in training, as tracing reads every attribute: noise, both
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = ov.convert_model(LastHidden().eval(), example_input={name: sample[name] for name in names})
    finally:
        hf_logging.set_verbosity(verbosity)
    encoder.eval()  # tracing restores the wrapper's training flag on every submodule
    # float32 weights as trained: the default fp16 compression moved vectors by 2.6e-4 even in float32 inference
    ov.save_model(converted, str(partial / GRAPH), compress_to_fp16=False)
    manifest = {"max_tokens": int(model.max_seq_length), "dimension": sentence_dimension(model)}
    (partial / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    model.tokenizer.save_pretrained(str(partial / TOKENIZER))  # as sentence-transformers loaded it, arguments and all
    try:
        os.rename(partial, folder)
    except OSError:  # another process exported the same model first: keep its copy
        shutil.rmtree(partial, ignore_errors=True)
    return folder / GRAPH


def openvino_runner(
    path: Path, threads: int, precision: str, compiled_cache: Path | None = None, streams: int = 1
) -> Callable[[dict], np.ndarray]:
    """One compiled OpenVINO model on the CPU: ``precision`` "bf16" or "f32"; ``threads`` as torch's, shared by
    ``streams`` requests that may run at once, from as many threads. With ``compiled_cache``, OpenVINO keeps the
    compiled model there, so later loads skip compiling."""
    import queue

    import openvino as ov

    core = ov.Core()
    if compiled_cache is not None:
        core.set_property({"CACHE_DIR": str(compiled_cache)})
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision}
    if streams > 1:
        config |= {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
    else:
        config["PERFORMANCE_HINT"] = "LATENCY"
    compiled = core.compile_model(str(path), "CPU", config)
    idle = queue.SimpleQueue()  # one request per stream; a thread takes one, runs it, gives it back
    for _ in range(streams):
        idle.put(compiled.create_infer_request())
    # One inference from this thread before any stream's: OpenVINO's bindings set up their numpy access on first use
    # (pybind11's call-once under the GIL), and two threads doing that at once deadlock. A Ray embedder actor, whose
    # first call runs both streams, hung there in 3 of 6 runs (docs/scaling.md).
    first = idle.get()
    first.infer({port: np.ones((1, 1), dtype=port.get_element_type().to_dtype()) for port in compiled.inputs})
    first.get_output_tensor(0).data.copy()
    idle.put(first)

    def run(feed: dict) -> np.ndarray:
        request = idle.get()
        try:
            request.infer(feed)
            return request.get_output_tensor(0).data.copy()
        finally:
            idle.put(request)

    return run


def wanted_runtime(runtime: str | None) -> str | None:
    """The runtime asked for, by the argument or else ``DOCRAG_EMBED_RUNTIME``: "torch", "openvino", or None (let the
    hardware and the model choose)."""
    wanted = (runtime or os.environ.get(RUNTIME_ENV, "")).strip().lower()
    if wanted not in ("", "torch", "openvino"):
        source = "runtime" if runtime else RUNTIME_ENV
        raise UsageError(f"{source}={wanted!r} is not an embedding runtime (valid: torch, openvino)")
    return wanted or None


def why_not_openvino(model, device: str) -> str | None:
    """None if this SentenceTransformer may embed on OpenVINO here, else the reason it stays on torch."""
    if device != "cpu":
        return f"the embedder runs on {device}"
    modules = [type(module).__name__ for module in model]
    if modules not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return f"the model's modules are {modules}, not an encoder with pooling"
    pooling = model[1].get_config_dict()
    # sentence-transformers 6 names the mode ("pooling_mode": "mean"); earlier versions set one flag per mode
    modes = [pooling["pooling_mode"]] if "pooling_mode" in pooling else [m for m, on in pooling.items() if on is True]
    if modes not in (["mean"], ["pooling_mode_mean_tokens"]):
        return f"the model pools by {modes}, not by the mean of its tokens"
    if getattr(model[0], "do_lower_case", False):  # sentence-transformers lowers the text before the tokenizer
        return "the model lowercases its input before tokenizing it"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino is not installed"
    return None


def exported_graph(model_dir: Path, name: str) -> Path:
    """Where the export of ``name`` (loaded from ``model_dir``) keeps its graph, whether or not it exists yet. The
    cache folder is keyed by the name, the weight files (a model replaced in place, same name, gets a new export), the
    exporting versions and the export's layout."""
    from importlib.metadata import version

    from .common import cache_dir

    digest = hashlib.sha256(name.encode())
    for part in (version("torch"), version("transformers"), version("openvino"), EXPORT_LAYOUT):
        digest.update(b"\0" + part.encode())
    for file in sorted([*model_dir.rglob("*.safetensors"), *model_dir.rglob("*.bin")]):
        stat = file.stat()
        digest.update(f"\0{file.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_dir("embedders", "openvino", digest.hexdigest()[:16]) / "encoder" / GRAPH


class OpenVINOEmbedder:
    """An ``Embedder`` on an exported graph: the model's own tokenizer, OpenVINO, and pooling in numpy."""

    runtime = "openvino"

    def __init__(self, name: str, tokenizer, graph: Path, dtype: str, batch_size: int, progress: bool) -> None:
        import json

        import torch

        manifest = json.loads((graph.parent / MANIFEST).read_text(encoding="utf-8"))
        self.name, self.dtype, self.batch_size = name, dtype, batch_size
        self.dimension, self.max_tokens = int(manifest["dimension"]), int(manifest["max_tokens"])
        self._tokenizer = tokenizer
        precision = "bf16" if dtype == "bfloat16" else "f32"
        compiled = graph.parent.parent / "compiled"
        threads = torch.get_num_threads()  # the process's setting (OMP_NUM_THREADS, a Ray actor's own)
        # One single-thread stream per core, each on its own batch: ingest 1.06x one request on every core (2 cores,
        # docs/scaling.md), where a small model's layers leave threads idle between operations.
        run = openvino_runner(graph, threads, precision, compiled_cache=compiled, streams=threads)
        self.embed_texts = graph_embedder(run, tokenizer, self.max_tokens, batch_size, progress, parallel=threads)

    def token_len(self, text: str) -> int:
        return token_count(self._tokenizer, text)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.embed_texts(texts)  # pooled and normalised in float32 already


def cached_openvino_embedder(
    name: str, model_dir: Path, dtype: str, batch_size: int, progress: bool
) -> OpenVINOEmbedder | None:
    """The embedder from an export made before, without sentence-transformers; None when there is none yet."""
    graph = exported_graph(model_dir, name)
    if not (graph.is_file() and (graph.parent / MANIFEST).is_file()):
        return None
    from transformers import AutoTokenizer  # the tokenizer the export saved: the same token counts, so same chunks

    tokenizer = AutoTokenizer.from_pretrained(str(graph.parent / TOKENIZER))
    return OpenVINOEmbedder(name, tokenizer, graph, dtype, batch_size, progress)


def openvino_embedder(
    model, name: str, model_dir: Path, dtype: str, batch_size: int, progress: bool
) -> OpenVINOEmbedder:
    """The embedder on OpenVINO for a float32 SentenceTransformer loaded from ``model_dir``: exported on first use,
    then read from the cache."""
    graph = exported_graph(model_dir, name)
    if not graph.is_file():
        print(f"Converting the embedder {name} for OpenVINO (once) ...", file=sys.stderr, flush=True)
        graph = export_openvino(model, graph.parent)
    return OpenVINOEmbedder(name, model.tokenizer, graph, dtype, batch_size, progress)
