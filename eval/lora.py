"""LoRA training pieces shared by the fine-tuned baselines (eval.finetune) and the RAFT reading adapter (eval.raft):
training examples, their encoding, the selective loss, and the RAFT adapter's trainer (validation-loss stopping).

Gemma 3 has a 262k-entry vocabulary, so its LM head costs as much as the rest of the model per token. The loss is
computed only where there are labels: the body runs on the whole sequence, and the head only on the labelled
positions (all tokens of a document chunk, only the answer tokens of a QA pair).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ingest.common import cache_dir

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


def bf16_autocast(device_type: str) -> bool:
    """Whether training on ``device_type`` ("cpu", "cuda") autocasts to bfloat16: where the hardware multiplies bf16
    natively, not where it would only emulate it (``DOCRAG_TRAIN_DTYPE`` overrides). Shared by every trainer here."""
    from ingest.common import preferred_dtype

    return preferred_dtype(device_type, "DOCRAG_TRAIN_DTYPE") == "bfloat16"


@dataclass
class LoraSettings:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    learning_rate: float = 5e-4
    epochs: int = 4
    batch_size: int = 8
    max_tokens: int = 160
    patience: int = 1  # epochs without validation improvement before stopping
    seed: int = 0
    # bf16 autocast where the hardware computes in bf16 natively (AVX512-BF16/AMX, CUDA): about 2x faster steps on
    # 2 cores; the adapter's weights and the optimiser stay float32.
    mixed_precision: bool = False


@dataclass
class Example:
    prompt: str  # no loss on these tokens
    target: str  # loss on these tokens


def closed_book_prompt(question: str) -> str:
    """The prompt every closed-book system sees, and the QA format the adapter is trained on."""
    return f"Question: {' '.join(question.split())}\nAnswer:"


_CLOZE_TARGET = re.compile(
    r"(\b\d[\d.,]*(?:\s(?:million|percent|days|weeks|months|years))?\b|\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)+\b)"
)


def cloze_pairs(chunks: list[str], seed: int = 0, limit: int = 400) -> list[tuple[str, str]]:
    """Fill-in-the-blank questions from the documents' own sentences: what a fine-tune recalls of its documents."""
    rng = random.Random(seed)
    pairs = []
    for chunk in chunks:
        for sentence in re.split(r"(?<=[.!?])\s+", chunk):
            targets = _CLOZE_TARGET.findall(sentence)
            if 6 <= len(sentence.split()) <= 40 and targets:
                target = rng.choice(targets)
                pairs.append((f"Fill in the blank: {sentence.replace(target, '___', 1)}", target))
    rng.shuffle(pairs)
    return pairs[:limit]


TRAINING_SOURCES = ("lora.py", "finetune.py", "frozen_head.py")


def training_source() -> bytes:
    """The code that trains (the loss, the loop, the epoch kept). Part of every cached adapter's and fine-tune's key:
    a change to it leaves what the cache holds trained by other code, so it trains again."""
    folder = Path(__file__).parent
    return b"".join((folder / name).read_bytes() for name in TRAINING_SOURCES)


def training_key(settings: list, examples: list[Example]) -> str:
    """The cache key of a model trained by this code: the training code, ``settings`` (as JSON) and every example."""
    digest = hashlib.sha256(training_source())
    digest.update(json.dumps(settings).encode())
    for example in examples:
        digest.update(example.prompt.encode() + b"\0" + example.target.encode() + b"\1")
    return digest.hexdigest()[:20]


def fingerprint(base_name: str, examples: list[Example], settings: LoraSettings) -> str:
    return training_key([base_name, asdict(settings)], examples)


def _encode(tokenizer, example: Example, max_tokens: int) -> tuple[list[int], list[int]]:
    prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"] if example.prompt else []
    target = tokenizer(example.target, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = (bos + prompt + target)[:max_tokens]
    labels = ([-100] * (len(bos) + len(prompt)) + target)[:max_tokens]
    return ids, labels


def selective_loss(model, input_ids, attention_mask, labels):
    """Cross-entropy over labelled positions only; the LM head never sees the rest. An output matrix that is not
    trained (and no soft-capping) takes eval.frozen_head's chunked pass: the logits never exist whole."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden, targets = _labelled_hidden(base, input_ids, attention_mask, labels)
    head = base.get_output_embeddings()
    if not head.weight.requires_grad and head.bias is None and not _softcap(base):
        from .frozen_head import frozen_head_cross_entropy

        return frozen_head_cross_entropy(hidden, head.weight, targets)
    return torch.nn.functional.cross_entropy(_head(base, hidden).float(), targets)


def labelled_logits(model, input_ids, attention_mask, labels):
    """(logits, next tokens) at the labelled positions only."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden, targets = _labelled_hidden(base, input_ids, attention_mask, labels)
    return _head(base, hidden), targets


def _labelled_hidden(base, input_ids, attention_mask, labels):
    """(last hidden states, next tokens) at the labelled positions. Works for any Hugging Face causal LM whose body
    sits under its ``base_model_prefix`` (``model`` for Llama, Gemma, Qwen, Mistral; ``transformer`` for GPT-2)."""
    body = getattr(base, base.base_model_prefix)
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    shifted_labels = labels[:, 1:]
    keep = shifted_labels != -100
    return hidden[:, :-1][keep], shifted_labels[keep]


def _head(base, hidden):
    import torch

    logits = base.get_output_embeddings()(hidden)
    softcap = _softcap(base)
    return torch.tanh(logits / softcap) * softcap if softcap else logits


def _softcap(base) -> float | None:
    return getattr(base.config, "final_logit_softcapping", None)


def _batches(encoded, batch_size, pad_id, rng=None):

    order = list(range(len(encoded)))
    if rng:
        rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        yield padded_batch([encoded[i] for i in order[start : start + batch_size]], pad_id)


def padded_batch(rows: list[tuple[list[int], list[int]]], pad_id: int):
    """(ids, attention mask, labels) tensors for (token ids, labels) rows, right-padded; padding is never a label."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (row_ids, row_labels) in enumerate(rows):
        ids[r, : len(row_ids)] = torch.tensor(row_ids)
        labels[r, : len(row_labels)] = torch.tensor(row_labels)
        mask[r, : len(row_ids)] = 1
    return ids, mask, labels


def train_lora(model, tokenizer, examples: list[Example], settings: LoraSettings, progress: bool = False):
    """Returns (peft model in eval mode, training stats). 10% of the examples are held out for early stopping."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    encoded = [_encode(tokenizer, e, settings.max_tokens) for e in examples]
    encoded = [e for e in encoded if any(label != -100 for label in e[1][1:])]
    rng.shuffle(encoded)
    n_val = max(1, len(encoded) // 10)
    validation, training = encoded[:n_val], encoded[n_val:]
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate)
    steps_per_epoch = math.ceil(len(training) / settings.batch_size)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    autocast = settings.mixed_precision and bf16_autocast(device.type)
    started = time.perf_counter()
    best, best_state, stale, history, tokens = float("inf"), None, 0, [], 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps_per_epoch * settings.epochs, desc="Training LoRA", file=sys.stderr)
    for epoch in range(settings.epochs):
        model.train()
        for ids, mask, labels in _batches(training, settings.batch_size, pad, rng):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = selective_loss(model, ids.to(device), mask.to(device), labels.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            tokens += int(mask.sum())
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        val = _validation_loss(model, validation, settings.batch_size, pad, device)
        history.append({"epoch": epoch + 1, "validation_loss": round(val, 4)})
        if val < best - 1e-4:
            best, stale = val, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}
        else:
            stale += 1
            if stale > settings.patience:
                break
    if bar:
        bar.close()
    if best_state:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    stats = {
        "seconds": round(time.perf_counter() - started, 1),
        "epochs_run": len(history),
        "best_validation_loss": round(best, 4),
        "history": history,
        "training_tokens": tokens,
        "examples": len(training),
        "validation_examples": len(validation),
        "adapter_parameters": trainable,
        "base_parameters": total - trainable,
        "adapter_share": round(trainable / max(1, total - trainable), 5),
        "settings": asdict(settings),
    }
    return model, stats


def _validation_loss(model, validation, batch_size, pad, device) -> float:
    import torch

    model.eval()
    losses = []
    with torch.no_grad():
        for ids, mask, labels in _batches(validation, batch_size, pad):
            losses.append(float(selective_loss(model, ids.to(device), mask.to(device), labels.to(device))))
    return sum(losses) / max(1, len(losses))


def trained_adapter(base_name: str | None, examples: list[Example], settings: LoraSettings, progress: bool = False):
    """The LoRA model for these examples: from the cache when the content hash matches, else trained and cached."""
    from peft import PeftModel

    from rag.generation import load_causal_lm

    model, tokenizer = load_causal_lm(base_name)
    key = fingerprint(base_name or "default", examples, settings)
    folder = cache_dir("eval", "adapters") / key
    if (folder / "adapter_config.json").is_file():
        stats = json.loads((folder / "stats.json").read_text())
        stats["cached"] = True
        return PeftModel.from_pretrained(model, str(folder)).eval(), tokenizer, stats
    model, stats = train_lora(model, tokenizer, examples, settings, progress)
    model.save_pretrained(str(folder), safe_serialization=True)
    stats["adapter_bytes"] = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    (folder / "stats.json").write_text(json.dumps(stats, indent=2))
    stats["cached"] = False
    return model, tokenizer, stats
