"""The fine-tuned variants of ``rag eval`` (LoRA on every linear layer, full fine-tuning), what each learnt, and the
dev-split choice of LoRA's rank and learning rate.

Defaults: LoRA rank 32 with learning rate 1e-3 and full fine-tuning at 1e-4, both with warm-up and cosine decay
(eval.finetune), follow Biderman et al. 2024 (LoRA on all linear layers wants about ten times full fine-tuning's rate).
Full fine-tuning's rate was raised from 5e-5 on the training curve of the demo corpus (its training pairs and held-out
paraphrases, never a test question): one trial at 1e-4 with the cosine schedule, 6 epochs, stored 97% of its training
pairs against 44%, and its held-out paraphrases rose to 0.56 against a peak of 0.34 (docs/evaluation.md). A ``--tune``
run replaces LoRA's pair with the best of LORA_GRID on the QA set's dev split (never the test split).
"""

from __future__ import annotations

from pathlib import Path

from .augment import Augmented
from .finetune import FinetuneSettings, answer_scores, trained_model
from .metrics import contains_alias, wilson_interval
from .systems import closed_book_all

VARIANTS = ("lora", "full_ft")
LORA_DEFAULT = {"rank": 32, "learning_rate": 1e-3}
FULL_LEARNING_RATE = 1e-4
LORA_GRID = (
    {"rank": 16, "learning_rate": 1e-3},
    {"rank": 32, "learning_rate": 1e-3},
    {"rank": 64, "learning_rate": 5e-4},
)
# LoRA learns more slowly than full fine-tuning (Biderman et al. 2024): at a 6-epoch cap its training pairs were
# still rising (0.77 -> 0.88 teacher-forced in the last two epochs, 84% greedy) while full fine-tuning had reached
# 0.98, so LoRA gets 8. A higher rate was no shortcut: 2e-3 diverged (training loss 3.3 -> 5.2; docs/evaluation.md).
LORA_EPOCHS, FULL_EPOCHS, QUICK_EPOCHS, TUNE_EPOCHS = 8, 6, 2, 2


def replay_passages() -> list[str]:
    """Generic text (no fact of the corpus or of the forgetting probe's control questions), trained alongside the
    documents so that the model keeps seeing ordinary prose: replay against forgetting."""
    text = Path(__file__).with_name("replay.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def settings_for(
    variant: str, seed: int, quick: bool, lora: dict | None = None, epochs: int | None = None
) -> FinetuneSettings:
    """``epochs`` caps training (default LORA_EPOCHS or FULL_EPOCHS, QUICK_EPOCHS with ``quick``); the held-out
    paraphrases can still stop it earlier."""
    if variant == "lora":
        epochs = epochs or (QUICK_EPOCHS if quick else LORA_EPOCHS)
        return FinetuneSettings(method="lora", seed=seed, max_epochs=epochs, **(lora or LORA_DEFAULT))
    if variant == "full_ft":
        epochs = epochs or (QUICK_EPOCHS if quick else FULL_EPOCHS)
        return FinetuneSettings(method="full", learning_rate=FULL_LEARNING_RATE, seed=seed, max_epochs=epochs)
    raise ValueError(f"unknown variant {variant!r} (valid: {', '.join(VARIANTS)})")


def tune_lora(generator_name, data: Augmented, dev_pairs: list[tuple[str, str]], seed: int, progress: bool) -> dict:
    """The LORA_GRID point with the best teacher-forced exact-answer rate (then answer loss) on the dev split's
    answerable questions, each trained for TUNE_EPOCHS epochs."""
    trials = []
    for point in LORA_GRID:
        settings = FinetuneSettings(method="lora", seed=seed, max_epochs=TUNE_EPOCHS, patience=TUNE_EPOCHS, **point)
        model, tokenizer, stats = trained_model(generator_name, data, settings, progress)
        exact, loss = answer_scores(model, tokenizer, dev_pairs)
        trials.append({**point, "dev_exact": round(exact, 4), "dev_loss": round(loss, 4), "seconds": stats["seconds"]})
        del model
    best = max(trials, key=lambda t: (t["dev_exact"], -t["dev_loss"]))
    return {"chosen": {"rank": best["rank"], "learning_rate": best["learning_rate"]}, "trials": trials}


def learned(generator, data: Augmented, limit: int | None) -> dict:
    """What a closed-book generator answers of its training material, asked as in the evaluation (``closed_book``:
    greedy decoding, alias containment): the QA pairs it trained on and cloze questions over its documents."""
    pairs = data.qa_train_pairs or data.train_pairs
    result = {}
    for key, questions in (("train_accuracy", pairs[:limit]), ("train_fact_recall", data.cloze)):
        replies = closed_book_all(generator, [q for q, _ in questions])
        right = sum(contains_alias(reply.answer, [a]) for reply, (_, a) in zip(replies, questions))
        result[key] = round(right / len(questions), 4) if questions else None
        result[f"{key}_ci95"] = wilson_interval(right, len(questions))
        result[f"{key}_n"] = len(questions)
    result["train_pairs_kind"] = "QA train split" if data.qa_train_pairs else "template questions"
    return result
