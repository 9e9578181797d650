"""Writing the evaluation report: report.json, report.md (for people) and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path

from .report_training import cost_section, curve_chart, learned_section, scope_section
from .systems import LATENCY_SAMPLE

LABELS = {
    "closed_book": "Closed book (base model)",
    "lora": "LoRA fine-tuned, closed book",
    "full_ft": "Full fine-tune, closed book",
    "rag": "RAG (base model + retrieval)",
    "rag_lora": "RAG + LoRA",
    "rag_full_ft": "RAG + full fine-tune",
    "rag_raft": "RAG + RAFT reading adapter",
    "long_context": "Long context (documents in the prompt)",
    "oracle": "Oracle (gold document given)",
}
MAIN_METRICS = [
    "accuracy",
    "hallucination_rate",
    "abstention_rate",
    "answerable_accuracy",
    "false_answer_rate",
    "accuracy_given_answered",
    "f1",
]


def write_report(report: dict, out: Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (out / "report.md").write_text(markdown(report))
    chart(report, out / "accuracy_vs_hallucination.png")
    curve_chart(report, out / "training_curve.png")


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _cell(metrics: dict, key: str) -> str:
    low, high = metrics.get("ci95", {}).get(key, (None, None))
    if low is None:
        return _pct(metrics.get(key))
    return f"{_pct(metrics.get(key))} ({100 * low:.0f}-{100 * high:.0f})"


def markdown(report: dict) -> str:
    config, systems = report["config"], report["systems"]
    lines = ["# RAG vs fine-tuning: factual QA report", ""]
    lines += [_summary(report), ""]
    lines += ["## What was compared", ""]
    lines += [
        f"- **Questions:** {config['questions']} from `{config['qa']}` (split `{config['split']}`), "
        f"{config['answerable']} answerable and {config['questions'] - config['answerable']} that the documents "
        'cannot answer (a good system says "I don\'t know" to those).',
        f"- **Documents:** `{config['corpus']}`.",
        f"- **Base model for every system:** {config['generator']}; embedder {config['embedder']}; greedy decoding; "
        f"device {config['device']}; seed {config['seed']}{'; quick run (the questions about a seeded quarter of the documents, which the fine-tunes train on; fewer epochs)' if config['quick'] else ''}.",
    ]
    lines += [f"- **{LABELS.get(n, n)}** (`{n}`)" for n in systems]
    lines += [
        "",
        "## Results",
        "",
        "Rates are over all questions unless named otherwise; 95% bootstrap intervals in brackets.",
        "",
    ]
    header = ["System"] + MAIN_METRICS + ["latency p50"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in systems.items():
        row = [LABELS.get(name, name)] + [_cell(metrics, m) for m in MAIN_METRICS] + [f"{metrics['latency_p50']:.2f} s"]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "- *accuracy*: an accepted answer is contained in the reply (SQuAD normalisation).",
        "- *hallucination rate*: wrong answers to answerable questions plus any answer to an unanswerable one.",
        "- *false answer rate*: share of unanswerable questions that got an answer anyway.",
        "- *latency p50*: one question asked alone. Systems without retrieval answer the whole set in batches (the same "
        "greedy decoding, several times faster on a CPU); their latency is timed on the first "
        f"{LATENCY_SAMPLE} questions asked one at a time (long context: behind the asking user's documents, whose "
        "cache is computed once per user).",
        "",
    ]
    recalls = {n: m.get("recall@5") for n, m in systems.items() if m.get("recall@5") is not None}
    if recalls:
        lines += [
            f"Retrieval recall@5 of the gold document: {', '.join(f'{n} {_pct(r)}' for n, r in recalls.items())}.",
            "",
        ]
    lines += learned_section(report)
    lines += cost_section(report)
    lines += [
        f"Index build {report.get('index_seconds')} s; whole evaluation {report.get('seconds')} s wall, "
        f"{report.get('cpu_seconds')} s CPU; process peak memory {report.get('peak_memory_mb')} MB.",
        "",
    ]
    stages = sorted(report.get("stage_seconds", {}).items(), key=lambda item: -item[1])
    if stages:
        lines += [f"Where the time went (wall): {'; '.join(f'{name} {seconds} s' for name, seconds in stages)}.", ""]
    probes = report.get("probes", {})
    lines += ["## Probes", ""] if probes else []
    if "privacy" in probes:
        p = probes["privacy"]
        leaks = ", ".join(f"{LABELS.get(n, n)} {_pct(v)}" for n, v in p["leak_rate"].items())
        lines += [
            f"**Privacy.** {p['questions']} questions whose answers sit only in restricted documents, asked by "
            f"an anonymous user. Share answered with the restricted fact: {leaks}. The adapter was trained on "
            "all documents, so whatever it learned it can tell anyone; RAG only reads what the user may read.",
            "",
        ]
    if "freshness" in probes and probes["freshness"].get("facts"):
        f = probes["freshness"]
        parts = ", ".join(
            f"{LABELS.get(n, n)}: {a['new_value']} new / {a['old_value']} old" for n, a in f["answers"].items()
        )
        retrain = f["retrain_seconds"] or {}
        retrain = ", ".join(f"{n} {s} s" for n, s in retrain.items()) if isinstance(retrain, dict) else retrain
        lines += [
            f"**Freshness.** {f['facts']} facts were changed in a copy of the corpus. Re-indexing took "
            f"{f['reindex_seconds']} s ({f['reindex_documents_updated']} documents re-embedded); re-training "
            f"takes about as long as training did ({retrain or 'n/a'}). Answers with the new value vs the old one: "
            f"{parts}.",
            "",
        ]
    if "forgetting" in probes:
        g = probes["forgetting"]
        kept = ", ".join(f"{LABELS.get(n, n)} {v['correct_of_those']}" for n, v in g.get("variants", {}).items())
        lines += [
            f"**Forgetting.** Of {g['control_questions']} general-knowledge control questions the base model "
            f"answered {g['base_correct']}; after fine-tuning (with generic text replayed) each still answers: "
            f"{kept}.",
            "",
        ]
    if report.get("examples"):
        names = [n for n in systems]
        lines += [
            "## Example answers",
            "",
            "| Question | Gold | " + " | ".join(names) + " |",
            "|" + "---|" * (len(names) + 2),
        ]
        for ex in report["examples"]:
            gold = ex["gold"][0] if ex["gold"] else "(unanswerable)"
            lines.append(f"| {ex['question']} | {gold} | " + " | ".join(str(ex.get(n, ""))[:40] for n in names) + " |")
        lines.append("")
    lines += scope_section(report)
    return "\n".join(lines)


def _summary(report: dict) -> str:
    systems = report["systems"]
    if "rag" not in systems:
        return "Summary: see the table."
    rag = systems["rag"]
    parts = [
        f"**In short:** with retrieval the model answered {_pct(rag['answerable_accuracy'])} of the answerable "
        f"questions correctly and hallucinated on {_pct(rag['hallucination_rate'])} of all questions"
    ]
    for other in ("closed_book", "lora", "full_ft", "long_context"):
        if other in systems:
            m = systems[other]
            parts.append(
                f"{LABELS[other].lower()}: {_pct(m['answerable_accuracy'])} correct, "
                f"{_pct(m['hallucination_rate'])} hallucinated"
            )
    return "; ".join(parts) + "."


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    for name, metrics in report["systems"].items():
        x, y = metrics["hallucination_rate"], metrics["accuracy"]
        ax.scatter([x], [y], s=80)
        ax.annotate(LABELS.get(name, name), (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel("hallucination rate (lower is better)")
    ax.set_ylabel("accuracy (higher is better)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"Accuracy vs hallucination, {report['config']['questions']} questions")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
