"""A second reader for the answerability gate: a SQuAD 2.0-style span model (start and end logits per token, the
[CLS] pair as "no answer") that reads every retrieved chunk. The extractive reader records how far its best span
beats "no answer" and whether it agrees with the generator's span; the learned gate weighs both
(``rag.answerability``, docs/reader.md).

The model is the bundled MiniLM fine-tuned on the shared SQuAD 2.0 pool (``python -m eval.train_span_reader``).
The shipped artifact (``rag/data/span_reader``) holds only the weights training changed, in float16, and is loaded
on top of the embedder's own files: the word embeddings and the first layer stayed frozen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ARTIFACT_DIR = Path(__file__).parent / "data" / "span_reader"
WEIGHTS = "trained-weights.safetensors"

MAX_LENGTH = 320  # question + chunk window, in word pieces; longer chunks are read in overlapping windows
STRIDE = 96
MAX_ANSWER_TOKENS = 30
TOP_CANDIDATES = 20  # best starts and ends combined per window


@dataclass(frozen=True)
class Span:
    text: str
    passage: int  # index into the texts read
    score: float  # start + end logit
    null_score: float  # the window's [CLS] start + end logit

    @property
    def margin(self) -> float:
        return self.score - self.null_score


def encode_windows(tokenizer, questions: list[str], texts: list[str], **options):
    """(question, text) pairs cut into overlapping windows of the text, with each token's character offsets: as the
    model is trained (``eval.train_span_reader``) and as it reads."""
    return tokenizer(
        questions,
        texts,
        truncation="only_second",
        max_length=MAX_LENGTH,
        stride=STRIDE,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        **options,
    )


class SpanModel:
    """A question-answering head on a BERT-style encoder, with its fast tokenizer."""

    def __init__(self, model, tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def best_spans(self, question: str, texts: list[str]) -> list[Span | None]:
        """Each text's best span (``None`` where no window had a valid one), with its "no answer" score."""
        import torch

        encoded = encode_windows(self.tokenizer, [question] * len(texts), texts, padding=True, return_tensors="pt")
        inputs = {key: encoded[key].to(self.model.device) for key in ("input_ids", "token_type_ids", "attention_mask")}
        with torch.inference_mode():
            out = self.model(**inputs)
        starts, ends = out.start_logits.float().cpu().tolist(), out.end_logits.float().cpu().tolist()
        best: list[Span | None] = [None] * len(texts)
        for window in range(len(encoded["input_ids"])):
            passage = int(encoded["overflow_to_sample_mapping"][window])
            span = _best_in_window(
                texts[passage],
                passage,
                starts[window],
                ends[window],
                encoded.sequence_ids(window),
                encoded["offset_mapping"][window].tolist(),
            )
            if span is not None and (best[passage] is None or span.margin > best[passage].margin):
                best[passage] = span
        return best


def _best_in_window(text, passage, starts, ends, sequence_ids, offsets) -> Span | None:
    """The best valid span of one window (inside the passage, start <= end, at most MAX_ANSWER_TOKENS) among its
    TOP_CANDIDATES best starts and ends; ``starts`` and ``ends`` are the window's logits as floats."""
    context = [i for i, s in enumerate(sequence_ids) if s == 1]
    if not context:
        return None
    start_candidates = sorted(context, key=starts.__getitem__, reverse=True)[:TOP_CANDIDATES]
    end_candidates = sorted(context, key=ends.__getitem__, reverse=True)[:TOP_CANDIDATES]
    pairs = [(s, e) for s in start_candidates for e in end_candidates if s <= e < s + MAX_ANSWER_TOKENS]
    if not pairs:
        return None
    s, e = max(pairs, key=lambda pair: starts[pair[0]] + ends[pair[1]])
    return Span(text[offsets[s][0] : offsets[e][1]].strip(), passage, starts[s] + ends[e], starts[0] + ends[0])


def save_trained_weights(model, out_dir: Path, record: dict) -> None:
    """The weights that training changed (``requires_grad``), in float16, with what built them."""
    import torch
    from safetensors.torch import save_file

    trained = {
        name: p.detach().to(torch.float16).contiguous() for name, p in model.named_parameters() if p.requires_grad
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(trained, str(out_dir / WEIGHTS))
    (out_dir / "span_reader.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def load_span_model(artifact_dir: Path = ARTIFACT_DIR) -> SpanModel:
    """The bundled MiniLM with the trained weights of ``artifact_dir`` on top, on the GPU when there is one."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    from ingest.common import ModelLoadError, best_device
    from ingest.embedding import default_embedder_path

    base = Path(default_embedder_path())
    weights = artifact_dir / WEIGHTS
    if not weights.is_file():
        raise ModelLoadError(
            f"no span reader weights at {weights}; rebuild them with `python -m eval.train_span_reader`"
        )
    model = BertForQuestionAnswering(BertConfig.from_pretrained(base))
    state = {f"bert.{name}": value for name, value in load_file(str(base / "model.safetensors")).items()}
    state.update({name: value.float() for name, value in load_file(str(weights)).items()})
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise ModelLoadError(f"{weights} does not fit the bundled MiniLM (missing {missing[0]}); rebuild it")
    return SpanModel(model.eval().to(best_device()), AutoTokenizer.from_pretrained(base))


@cache
def cached_span_model() -> SpanModel:
    return load_span_model()
