"""The knowledge fine-tunes: held-out stopping, the training curve, what was learnt, and how the report says it."""

import pytest

from eval.augment import Augmented
from eval.finetune import WARMUP_SHARE, FinetuneSettings, _scheduler, answer_scores, finetune
from eval.lora import Example, closed_book_prompt
from eval.metrics import wilson_interval
from eval.report_training import cost_section, learned_section
from eval.systems import FINE_TUNED_ON_QA, closed_book
from eval.variants import FULL_EPOCHS, LORA_EPOCHS, QUICK_EPOCHS, settings_for


def test_wilson_interval_is_sound_at_the_edges():
    assert wilson_interval(0, 0) == (0.0, 0.0)
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and 0.6 < low < 0.75
    low, high = wilson_interval(5, 10)
    assert low < 0.5 < high


def test_epochs_cap_every_variant_and_default_to_the_recipe():
    assert settings_for("lora", 0, quick=False).max_epochs == LORA_EPOCHS > FULL_EPOCHS  # LoRA learns more slowly
    assert settings_for("full_ft", 0, quick=False).max_epochs == FULL_EPOCHS
    assert settings_for("full_ft", 0, quick=True).max_epochs == QUICK_EPOCHS
    for variant in ("lora", "full_ft"):
        settings = settings_for(variant, 0, quick=True, epochs=20)
        assert settings.max_epochs == 20 and settings.patience == 1  # the held-out stop still applies


def _rates(schedule: str, total: int) -> list[float]:
    import torch

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = _scheduler(optimizer, FinetuneSettings(learning_rate=1e-3, schedule=schedule), total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_the_cosine_schedule_warms_up_then_decays_to_zero_and_constant_stays_put():
    rates = _rates("cosine", 200)
    warmup = int(WARMUP_SHARE * 200)
    assert rates[0] < 0.2e-3 and rates[warmup] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1 :]))  # never rises again
    assert rates[-1] < 0.01e-3
    assert set(_rates("constant", 20)) == {1e-3}
    with pytest.raises(ValueError, match="linear"):
        _rates("linear", 10)


class _RecordingGenerator:
    """Answers "Zorblax" and remembers the prefix each question was asked behind."""

    def __init__(self, fine_tuned: bool) -> None:
        self.model = type("Model", (), {"config": type("Config", (), {FINE_TUNED_ON_QA: fine_tuned})()})()
        self.prefixes: list[str] = []

    def generate(self, prompts, max_new_tokens, stops, prefix=""):
        self.prefixes.append(prefix)
        return [" Zorblax"] * len(prompts)


def test_a_fine_tune_is_asked_in_its_training_format_and_the_base_behind_the_few_shot_examples():
    base, tuned = _RecordingGenerator(False), _RecordingGenerator(True)
    for generator in (base, tuned):
        assert closed_book(generator, "What is the ferry called?").answer == "Zorblax"
    assert "Question: How many legs does a spider have?" in base.prefixes[0]
    assert tuned.prefixes == [""]  # exactly the bare "Question: ...\nAnswer:" it was trained on


def _report(train_accuracy: float) -> dict:
    row = {"train_accuracy": train_accuracy, "train_accuracy_ci95": (0.5, 0.9), "train_accuracy_n": 40}
    row |= {"train_fact_recall": 0.2, "train_fact_recall_ci95": (0.1, 0.3), "train_fact_recall_n": 40}
    curve = [{"epoch": 1, "heldout_exact": 0.25, "heldout_loss": 1.0, "train_pairs_exact": 0.5}]
    stats = {"curve": curve, "best_epoch": 1, "epochs_run": 1, "stopped_by": "max epochs"}
    return {"learned": {"closed_book": dict(row, train_accuracy=0.01), "lora": row}, "training": {"lora": stats}}


def test_the_report_calls_a_fine_tune_under_0_90_on_its_training_pairs_under_trained():
    text = "\n".join(learned_section(_report(0.62)))
    assert "LoRA (every linear layer) is under-trained" in text and "62.0% (50-90), n=40" in text
    assert "Base model (no training) is under-trained" not in text
    assert "under-trained" not in "\n".join(learned_section(_report(0.95)))


def test_a_cached_fine_tune_is_keyed_by_the_code_that_trains_it(monkeypatch):
    import eval.finetune
    import eval.lora

    data = Augmented(examples=[], document_views=[[]], train_pairs=[], qa_train_pairs=[], heldout=[], cloze=[])
    key = eval.finetune.fingerprint("gemma", data, FinetuneSettings())
    assert eval.finetune.fingerprint("gemma", data, FinetuneSettings()) == key
    monkeypatch.setattr(eval.lora, "training_source", lambda: b"a changed loss")
    assert eval.finetune.fingerprint("gemma", data, FinetuneSettings()) != key


def test_the_peak_memory_note_names_only_the_models_that_were_loaded():
    report = _report(0.95) | {"peak_memory_mb": 9500}
    text = "\n".join(cost_section(report))
    assert "the base model and the LoRA model." in text
    assert "RAFT" not in text and "long-context" not in text and "full fine-tune" not in text
    assert "Peak memory" not in "\n".join(cost_section(_report(0.95) | {"peak_memory_mb": 5000}))


def test_an_epoch_tied_on_held_out_paraphrases_is_kept_if_it_stored_more_training_pairs():
    from eval.finetune import _selection_key

    curve = [
        {"epoch": 4, "heldout_exact": 0.32, "train_pairs_exact": 0.77, "heldout_loss": 1.14},
        {"epoch": 5, "heldout_exact": 0.29, "train_pairs_exact": 0.96, "heldout_loss": 1.20},
        {"epoch": 6, "heldout_exact": 0.32, "train_pairs_exact": 0.96, "heldout_loss": 1.26},
    ]
    assert max(curve, key=_selection_key)["epoch"] == 6
    curve[2]["heldout_exact"] = 0.31  # one paraphrase fewer: the held-out count decides alone
    assert max(curve, key=_selection_key)["epoch"] == 4


@pytest.mark.slow
def test_lora_on_every_linear_layer_learns_a_made_up_fact_and_keeps_the_best_epoch():
    from rag.generation import HFGenerator, load_causal_lm

    model, tokenizer = load_causal_lm()
    pairs = [("What is the code name of the Brennvik night ferry?", "Zorblax")]
    heldout = [("The Brennvik night ferry has which code name?", "Zorblax")]
    data = Augmented(
        examples=[Example(closed_book_prompt(q), f" {a}\n") for q, a in pairs] * 8,
        document_views=[[Example("", "The Brennvik night ferry is code-named Zorblax.")]],
        train_pairs=pairs,
        qa_train_pairs=pairs,
        heldout=heldout,
        cloze=[],
    )
    before = answer_scores(model, tokenizer, pairs)[0]
    settings = FinetuneSettings(rank=8, learning_rate=3e-3, max_epochs=3, patience=3, batch_size=3, max_tokens=32)
    tuned, stats = finetune(model, tokenizer, data, settings)
    exact, _ = answer_scores(tuned, tokenizer, pairs)
    greedy = HFGenerator(tuned, tokenizer, "lora").generate([closed_book_prompt(pairs[0][0])], 8)[0]
    assert before == 0.0 and exact == 1.0
    assert greedy.strip() == "Zorblax"  # teacher-forced exactness is what greedy decoding produces
    assert [c["epoch"] for c in stats["curve"]] == [1, 2, 3] and stats["stopped_by"] == "max epochs"
    best = max(stats["curve"], key=lambda c: (c["heldout_exact"], c["train_pairs_exact"], -c["heldout_loss"]))
    assert stats["best_epoch"] == best["epoch"]
    assert 0 < stats["trainable_parameters"] < 0.05 * sum(p.numel() for p in tuned.parameters())
