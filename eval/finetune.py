"""The knowledge fine-tunes: LoRA on every linear layer, or all weights, trained on eval.augment's data.

Training stops on the held-out paraphrases of the training facts, not on a mixed loss: the epoch kept is the one that
answers most of them (see ``_selection_key`` for ties). Every epoch records the loss, the exact-answer rate on a sample
of the training QA pairs and on the held-out paraphrases: the training curve of the report. The exact-answer rate is
measured teacher-forced (every answer token, and the newline after it, is the model's top choice), which is exactly
what greedy decoding of the training prompt would produce, in one batched forward pass instead of a decoding loop.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass

from ingest.common import cache_dir

from .augment import Augmented
from .lora import (
    Example,
    _encode,
    bf16_autocast,
    closed_book_prompt,
    labelled_logits,
    padded_batch,
    selective_loss,
    training_key,
)

CURVE_SAMPLE = 64  # training pairs and held-out paraphrases scored after each epoch
WARMUP_SHARE = 0.05  # of all the steps max_epochs would take, for the cosine schedule


@dataclass
class FinetuneSettings:
    method: str = "lora"  # "lora": adapters on every linear layer; "full": all weights
    rank: int = 32
    learning_rate: float = 1e-3
    max_epochs: int = 6
    patience: int = 1  # epochs without held-out improvement before stopping
    batch_size: int = 8
    max_tokens: int = 192
    seed: int = 0
    mixed_precision: bool = True  # bf16 autocast where the hardware computes in bf16 natively; weights stay float32
    max_seconds: float | None = None  # stop after the epoch that passes this (None: no limit)
    train_embeddings: bool = False  # full fine-tuning: also the (tied) token embedding matrix
    # "cosine": linear warm-up over WARMUP_SHARE of the steps, then cosine decay to 0 (the usual recipe); at a constant
    # rate the full fine-tune of the demo corpus stored 44% of its training pairs in 6 epochs, with this one 97%
    schedule: str = "cosine"  # or "constant"


def _prepare(model, settings: FinetuneSettings):
    import torch

    if settings.method == "full":
        for parameter in model.parameters():
            parameter.requires_grad = True
        if not settings.train_embeddings:
            # Gemma's 262k-entry vocabulary matrix (tied input/output, 168M of 268M weights) holds the vocabulary, not
            # the facts; training it would double a CPU step and add 2 GB of optimiser state.
            model.get_input_embeddings().weight.requires_grad = False
        return model
    if settings.method != "lora":
        raise ValueError(f"unknown fine-tuning method {settings.method!r} (valid: lora, full)")
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.rank,
        lora_alpha=2 * settings.rank,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(settings.seed)
    return get_peft_model(model, config)


def _batches(encoded, batch_size: int, pad: int, rng: random.Random | None = None):
    """Batches of similar length (little padding), in random order when ``rng`` is given."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng:
        rng.shuffle(groups)
    for group in groups:
        yield (group, *padded_batch([encoded[i] for i in group], pad))


def answer_scores(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 16) -> tuple[float, float]:
    """(exact-answer rate, mean answer loss) of ``pairs`` under the training prompt, teacher-forced."""
    import torch

    if not pairs:
        return 0.0, 0.0
    encoded = [_encode(tokenizer, Example(closed_book_prompt(q), f" {a}\n"), 256) for q, a in pairs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    exact, losses = 0, []
    with torch.no_grad():
        for _, ids, mask, labels in _batches(encoded, batch_size, pad):
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            logits, targets = labelled_logits(model, ids, mask, labels)
            wrong = (logits.argmax(-1) != targets).long()
            # one row per example: scatter the labelled positions' misses back to their rows
            rows = (labels[:, 1:] != -100).nonzero()[:, 0]
            misses = torch.zeros(len(ids), dtype=torch.long, device=device).index_add_(0, rows, wrong)
            exact += int((misses == 0).sum())
            losses.append(float(torch.nn.functional.cross_entropy(logits.float(), targets)))
    model.train(was_training)
    return exact / len(pairs), sum(losses) / len(losses)


def finetune(model, tokenizer, data: Augmented, settings: FinetuneSettings, progress: bool = False):
    """(model in eval mode, stats with the per-epoch curve); the epoch with the best held-out score is kept."""
    import torch

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    model = _prepare(model, settings)
    device = next(model.parameters()).device
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    fixed = [_encode(tokenizer, e, settings.max_tokens) for e in data.examples]
    views = [[_encode(tokenizer, e, settings.max_tokens) for e in view] for view in data.document_views]
    steps_per_epoch = -(-(len(fixed) + max((len(v) for v in views), default=0)) // settings.batch_size)
    scheduler = _scheduler(optimizer, settings, steps_per_epoch * settings.max_epochs)
    train_sample = rng.sample(data.train_pairs, min(CURVE_SAMPLE, len(data.train_pairs)))
    heldout = data.heldout[:CURVE_SAMPLE]
    autocast = settings.mixed_precision and bf16_autocast(device.type)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    best, best_state, stale, curve, tokens = None, None, 0, [], 0
    stopped_by = "max epochs"
    for epoch in range(settings.max_epochs):
        encoded = [e for e in fixed + views[epoch % len(views)] if any(x != -100 for x in e[1][1:])]
        model.train()
        losses = []
        for _, ids, mask, labels in _bar(list(_batches(encoded, settings.batch_size, pad, rng)), epoch, progress):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = selective_loss(model, ids.to(device), mask.to(device), labels.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            tokens += int(mask.sum())
        train_exact, _ = answer_scores(model, tokenizer, train_sample)
        held_exact, held_loss = answer_scores(model, tokenizer, heldout)
        curve.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(sum(losses) / max(1, len(losses)), 4),
                "train_pairs_exact": round(train_exact, 4),
                "heldout_exact": round(held_exact, 4),
                "heldout_loss": round(held_loss, 4),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        score = _selection_key(curve[-1])
        if best is None or score > best:
            best, stale = score, 0
            best_state = _snapshot(model, settings.method)
        else:
            stale += 1
            if stale > settings.patience:
                stopped_by = "held-out plateau"
                break
        if settings.max_seconds and time.perf_counter() - started > settings.max_seconds:
            stopped_by = "time budget"
            break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    n_trainable = sum(p.numel() for p in trainable)
    best_epoch = max(curve, key=_selection_key)["epoch"]
    return model, {
        "method": settings.method,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(_cpu_seconds() - cpu_started, 1),
        "epochs_run": len(curve),
        "best_epoch": best_epoch,
        "stopped_by": stopped_by,
        "curve": curve,
        "training_tokens": tokens,
        "heldout_n": len(heldout),
        "train_sample_n": len(train_sample),
        "examples_per_epoch": len(fixed) + len(views[0]),
        "trainable_parameters": n_trainable,
        "peak_memory_mb": _peak_mb(),
        "settings": asdict(settings),
    }


def _selection_key(epoch: dict) -> tuple[float, float, float]:
    """Held-out paraphrases answered first. A few dozen paraphrases often tie two epochs (the full demo run of
    2026-12-07: epochs 4 and 6 of the full fine-tune, 10 of 31 each); the tie goes to the epoch that stored more of
    its training pairs, the stronger baseline on questions about those facts, and only then to the lower held-out
    loss (which rises as a model grows surer of the answers it gets wrong, while the count answered holds)."""
    return (epoch["heldout_exact"], epoch["train_pairs_exact"], -epoch["heldout_loss"])


def _scheduler(optimizer, settings: FinetuneSettings, total_steps: int):
    """The learning rate per step: constant, or warm-up then cosine decay over the steps max_epochs would take (an
    early stop leaves it part-way down)."""
    import math

    import torch

    if settings.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if settings.schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {settings.schedule!r} (valid: constant, cosine)")
    warmup = max(1, int(WARMUP_SHARE * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _snapshot(model, method: str) -> dict:
    state = model.state_dict()
    keys = state if method == "full" else [k for k in state if "lora_" in k]
    return {k: state[k].detach().clone() for k in keys}


def fingerprint(base_name: str, data: Augmented, settings: FinetuneSettings) -> str:
    examples = data.examples + [e for view in data.document_views for e in view]
    return training_key([base_name, asdict(settings), data.heldout], examples)


def trained_model(base_name: str | None, data: Augmented, settings: FinetuneSettings, progress: bool = False):
    """(model, tokenizer, stats) from the cache when the content hash matches, else trained and cached. A LoRA run
    caches its adapter; a full fine-tune its whole checkpoint (safetensors)."""
    from rag.generation import load_causal_lm

    # float32 weights everywhere (a GPU would load bf16): the optimiser's small updates need them; compute is autocast
    model, tokenizer = load_causal_lm(base_name, dtype="float32")
    folder = cache_dir("eval", "finetunes") / fingerprint(base_name or "default", data, settings)
    if (folder / "stats.json").is_file():
        stats = dict(json.loads((folder / "stats.json").read_text()), cached=True)
        if settings.method == "lora":
            from peft import PeftModel

            return PeftModel.from_pretrained(model, str(folder)).eval(), tokenizer, stats
        from transformers import AutoModelForCausalLM

        device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
        del model
        full = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        return full.to(device).eval(), tokenizer, stats
    model, stats = finetune(model, tokenizer, data, settings, progress)
    model.save_pretrained(str(folder), safe_serialization=True)
    stats["saved_bytes"] = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    (folder / "stats.json").write_text(json.dumps(stats, indent=2))
    return model, tokenizer, dict(stats, cached=False)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _bar(batches, epoch: int, show: bool):
    if not show:
        return batches
    from tqdm import tqdm

    return tqdm(batches, desc=f"epoch {epoch + 1}", file=sys.stderr, leave=False)
