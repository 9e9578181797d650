"""Where models run and in which precision: shared by the embedder, the generator and the training loops."""

from __future__ import annotations

import os


def best_device() -> str:
    """The device to run models on: "cuda", else "mps", else "cpu"."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def preferred_dtype(device: str, env_var: str) -> str:
    """bfloat16 where the hardware multiplies it natively (AVX512-BF16/AMX CPUs, bf16-capable GPUs), else float32;
    ``env_var`` set to "float32" or "bfloat16" overrides. Shared by the embedder, the generator and training."""
    import torch

    forced = os.environ.get(env_var, "").strip().lower()
    if forced in ("float32", "fp32", "bfloat16", "bf16"):
        return "bfloat16" if forced.startswith("b") else "float32"
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device == "cpu":
        supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return "bfloat16" if supported is not None and supported() else "float32"
    return "float32"
