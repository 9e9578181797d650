"""The fine-tuning half of the report: what each fine-tuned model learnt, what it cost, its training curve, and what
the comparison does and does not show."""

from __future__ import annotations

from pathlib import Path

from .metrics import wilson_interval

UNDER_TRAINED = 0.90  # accuracy on its own training pairs under which a fine-tune is called under-trained
PEAK_NOTE_MB = 8000  # above this, the report explains where the memory went
NAMES = {"closed_book": "Base model (no training)", "lora": "LoRA (every linear layer)", "full_ft": "Full fine-tune"}


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _with_ci(row: dict, key: str) -> str:
    low, high = row.get(f"{key}_ci95", (None, None))
    if low is None:
        return _pct(row.get(key))
    return f"{_pct(row.get(key))} ({100 * low:.0f}-{100 * high:.0f}), n={row.get(f'{key}_n')}"


def learned_section(report: dict) -> list[str]:
    learned, training = report.get("learned") or {}, report.get("training") or {}
    if not learned:
        return []
    kind = next(iter(learned.values())).get("train_pairs_kind", "training pairs")
    lines = [
        "## What the fine-tuned models learnt",
        "",
        f"Each model is asked, as in the evaluation, the QA pairs it was trained on ({kind}) and fill-in-the-blank "
        "questions over its training documents (never trained in that form). The held-out column is the share of "
        "held-out paraphrases of trained facts answered exactly at the kept epoch: what stopped training. 95% Wilson "
        "intervals in brackets.",
        "",
        "| Model | train_accuracy | train_fact_recall | held-out paraphrases | epochs (kept / run, why stopped) |",
        "|---|---|---|---|---|",
    ]
    for name, row in learned.items():
        stats = training.get(name, {})
        curve = {c["epoch"]: c for c in stats.get("curve", [])}
        kept = curve.get(stats.get("best_epoch"), {})
        epochs = f"{stats.get('best_epoch')} / {stats.get('epochs_run')}, {stats.get('stopped_by')}" if stats else "-"
        held = "-"
        if kept:
            n = stats.get("heldout_n") or min(48, (report.get("augmentation") or {}).get("heldout_paraphrases", 0))
            held = _pct(kept["heldout_exact"])
            if n:
                low, high = wilson_interval(round(kept["heldout_exact"] * n), n)
                held += f" ({100 * low:.0f}-{100 * high:.0f}), n={n}"
        lines.append(
            f"| {NAMES.get(name, name)} | {_with_ci(row, 'train_accuracy')} | {_with_ci(row, 'train_fact_recall')} "
            f"| {held} | {epochs} |"
        )
    lines.append("")
    for name, row in learned.items():
        if name == "closed_book" or row.get("train_accuracy") is None:
            continue
        if row["train_accuracy"] < UNDER_TRAINED:
            lines.append(
                f"**{NAMES.get(name, name)} is under-trained:** it answers {_pct(row['train_accuracy'])} of its own "
                f"training questions, under the {_pct(UNDER_TRAINED)} a fair baseline should reach. Its closed-book "
                "score below is a lower bound of what fine-tuning can do here; the training curve "
                "(training_curve.png) shows whether more epochs were still paying."
            )
        else:
            lines.append(
                f"**{NAMES.get(name, name)} learnt its training questions** ({_pct(row['train_accuracy'])}); what it "
                "misses on the test questions it missed in generalising from its training wordings, not in storing."
            )
        lines.append("")
    return lines


def cost_section(report: dict) -> list[str]:
    training = {k: v for k, v in (report.get("training") or {}).items() if isinstance(v, dict)}
    if not training:
        return []
    lines = [
        "## What fine-tuning cost",
        "",
        "| Model | training wall time | CPU time | process peak memory after training | tokens trained | "
        "trainable parameters | saved size |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in training.items():
        cached = " (cached, measured when trained)" if s.get("cached") else ""
        lines.append(
            f"| {NAMES.get(name, name)} | {s.get('seconds')} s{cached} | {s.get('cpu_seconds')} s | "
            f"{s.get('peak_memory_mb')} MB | {s.get('training_tokens')} | {s.get('trainable_parameters')} | "
            f"{s.get('saved_bytes', 'n/a')} bytes |"
        )
    base = report.get("training", {}).get("base_model_bytes")
    lines += ["", f"The base model's weights take {base} bytes in memory." if base else "", ""]
    peak = report.get("peak_memory_mb") or 0
    if peak > PEAK_NOTE_MB:
        held = ["the base model"]
        held += ["the LoRA model"] if "lora" in training else []
        if "full_ft" in training:
            held.append("the full fine-tune with its optimiser state while it trains (and a copy of its best epoch)")
        held += ["the merged RAFT reader"] if report.get("raft_training") else []
        held += ["the long-context KV caches"] if (report.get("long_context") or {}).get("runs") else []
        lines += [
            f"Peak memory passed {PEAK_NOTE_MB // 1000} GB ({peak:.0f} MB) because one process holds every model "
            f"side by side: {', '.join(held[:-1])} and {held[-1]}. Each system alone needs one model's weights."
            if len(held) > 1
            else f"Peak memory passed {PEAK_NOTE_MB // 1000} GB ({peak:.0f} MB).",
            "",
        ]
    aug = report.get("augmentation")
    if aug:
        per = aug["restatements_per_fact"]
        tokens = aug.get("tokens", {})
        lines += [
            f"**Training data, from the documents alone.** {aug['facts']} facts (sentences with a date, amount or "
            f"name), each restated {per['min']}-{per['max']} times (median {per['median']}) per cycle of "
            f"{aug['document_views']} document views (original, then sentences shuffled and recombined): a "
            f"template question each, {aug['qa_train_pairs']} train-split QA pairs, "
            f"{aug['model_paraphrases_trained']} of the base model's own paraphrases, and {aug['replay_passages']} "
            f"passages of generic text replayed against forgetting. Tokens per epoch: "
            f"{tokens.get('qa_and_paraphrases')} in QA pairs and paraphrases, {tokens.get('documents_per_view')} "
            f"in the documents. Held out: {aug['heldout_paraphrases']} {aug['heldout_kind']}. Generating it all "
            f"took {aug['generation_seconds']} s.",
            "",
        ]
    tuning = report.get("tuning")
    if tuning:
        trials = "; ".join(
            f"rank {t['rank']}, rate {t['learning_rate']}: {_pct(t['dev_exact'])} exact" for t in tuning["trials"]
        )
        chosen = tuning["chosen"]
        lines += [f"**LoRA rank and learning rate, chosen on the dev split:** {trials}. Chosen: {chosen}.", ""]
    return lines


def scope_section(report: dict) -> list[str]:
    systems = report["systems"]
    lines = ["## What this comparison shows, and what it does not", ""]
    if report.get("long_context"):
        plan = report["long_context"]
        lines.append(
            f"- *Long context* {'ran' if plan['runs'] else 'did not run'}: {plan['reason']} "
            "(each user's permitted documents only)."
        )
    lines += [
        "- It shows how each system does on these questions with this base model, with intervals: differences "
        "inside overlapping intervals are no differences.",
        "- The fine-tunes saw every fact several times in several wordings, but not the test questions' wordings; "
        "the learnt table above says how much of their training material they can return when asked.",
        "- It does not show what a larger model, a GPU's budget of epochs, or other augmentation would reach; "
        "`--generator` runs the same comparison with any local Hugging Face causal LM.",
        "- The fine-tunes were trained on every document, restricted ones included: they answer anyone (see the "
        "privacy probe); retrieval and long context read only what the asking user may read.",
    ]
    if any(n in systems for n in ("rag_lora", "rag_full_ft")):
        lines.append(
            "- `rag_lora` / `rag_full_ft` read retrieved passages with the fine-tuned model: whether knowledge and "
            "retrieval compound shows in their row against `rag`."
        )
    return lines + [""]


def curve_chart(report: dict, path: Path) -> bool:
    """Per-epoch exact-answer rate on training pairs and held-out paraphrases, one line pair per fine-tune."""
    training = {k: v for k, v in (report.get("training") or {}).items() if isinstance(v, dict) and v.get("curve")}
    if not training:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for name, stats in training.items():
        epochs = [c["epoch"] for c in stats["curve"]]
        line = ax.plot(epochs, [c["train_pairs_exact"] for c in stats["curve"]], marker="o", label=f"{name} train")
        ax.plot(
            epochs,
            [c["heldout_exact"] for c in stats["curve"]],
            marker="x",
            linestyle="--",
            color=line[0].get_color(),
            label=f"{name} held-out",
        )
    ax.axhline(UNDER_TRAINED, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("epoch")
    ax.set_ylabel("exact answers (teacher-forced)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("Training curve: training pairs vs held-out paraphrases")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
