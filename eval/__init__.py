"""Eval: QA sets, metrics, the LoRA baseline, the systems under comparison, reports and benchmarks."""
