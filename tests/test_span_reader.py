"""The span model behind the answerability gate's second opinion (rag.span_reader): span search within a window, the
signals the extractive reader records from it, and the shipped artifact (size, provenance, what it reads)."""

import json

import pytest

from rag.reader import span_signals
from rag.span_reader import ARTIFACT_DIR, WEIGHTS, Span, _best_in_window
from rag.types import SearchResult


def _result(text: str) -> SearchResult:
    return SearchResult(rank=1, score=0.5, source="a.md", chunk_id=1, text=text, start=0, end=len(text))


class FakeSpanModel:
    def __init__(self, spans):
        self.spans = spans

    def best_spans(self, question, texts):
        return self.spans[: len(texts)]


def test_the_best_span_lies_in_the_passage_starts_before_it_ends_and_beats_the_rest():
    text = "Ana Li founded Tidewater in 1999."
    # tokens: [CLS] q [SEP] Ana Li founded Tidewater in 1999 . [SEP]
    sequence_ids = [None, 0, None, 1, 1, 1, 1, 1, 1, 1, None]
    offsets = [(0, 0), (0, 3), (0, 0), (0, 3), (4, 6), (7, 14), (15, 24), (25, 27), (28, 32), (32, 33), (0, 0)]
    starts = [1.0, 9.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 9.0]
    ends = [1.0, 9.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 6.0, 0.0, 9.0]
    span = _best_in_window(text, 2, starts, ends, sequence_ids, offsets)
    # The question token and [SEP] score highest but are not the passage; "1999" ... "Li" (5 + 7) ends before it
    # starts; so "1999" (5 + 6) beats "Ana Li" (2 + 7) and "Ana ... 1999" (2 + 6).
    assert span == Span("1999", 2, 11.0, 2.0)
    assert span.margin == 9.0


def test_the_best_pair_ending_before_its_start_is_never_chosen_and_a_window_without_passage_gives_none():
    sequence_ids = [None, 1, 1, None]
    offsets = [(0, 0), (0, 1), (2, 3), (0, 0)]
    # "b" starts best (5) and "a" ends best (5), but that pair ends before it starts; the one-token spans score -4
    span = _best_in_window("a b", 0, [0.0, -9.0, 5.0, 0.0], [0.0, 5.0, -9.0, 0.0], sequence_ids, offsets)
    assert span == Span("b", 0, -4.0, 0.0)
    assert _best_in_window("", 0, [0.0, 0.0], [0.0, 0.0], [None, None], [(0, 0), (0, 0)]) is None


def test_the_reader_records_the_widest_margin_and_how_far_the_two_readers_agree():
    model = FakeSpanModel([Span("USD 240", 0, 6.0, 1.0), Span("Tomas Rivera", 1, 9.0, 7.5)])
    signals = span_signals(model, "What does the sleeper cost?", [_result("x"), _result("y")], "USD 240 per cabin")
    assert signals["span_margin"] == 5.0  # 6 - 1 beats 9 - 7.5
    assert signals["span_agrees"] == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))
    disagreeing = span_signals(model, "What does the sleeper cost?", [_result("x"), _result("y")], "Chicago")
    assert disagreeing["span_agrees"] == 0.0
    nothing = span_signals(FakeSpanModel([None]), "Who?", [_result("x")], "Ana")
    assert nothing == {"span_margin": -20.0, "span_agrees": 0.0}


def test_the_shipped_artifact_says_how_it_was_built():
    assert (ARTIFACT_DIR / WEIGHTS).is_file()  # the 20 MB budget: tests/test_reader_config.py
    record = json.loads((ARTIFACT_DIR / "span_reader.json").read_text())
    assert record["command"].startswith("python -m eval.train_span_reader")
    assert {"seed", "training_seconds", "threads", "epochs"} <= set(record)
    assert "CC BY-SA 4.0" in record["license"]


@pytest.mark.slow
def test_the_shipped_span_model_reads_a_text_it_never_saw(tmp_path):
    from rag.span_reader import load_span_model, save_trained_weights

    model = load_span_model()
    text = (
        "The Kelso Observatory is directed by Amara Okafor, who joined it in March 2015. "
        "Its night assistant is Tomas Rivera."
    )
    (found,) = model.best_spans("Who directs the Kelso Observatory?", [text])
    assert found.text == "Amara Okafor"
    assert model.best_spans("When did Amara Okafor join the observatory?", [text])[0].text == "March 2015"
    assert model.best_spans("Who is the night assistant?", [text])[0].text == "Tomas Rivera"
    # a near miss: the same words, another institution; "no answer" gains on the span
    (near_miss,) = model.best_spans("Who directs the Kelso Aquarium?", [text])
    assert near_miss.margin < found.margin - 1
    # what save_trained_weights writes, load_span_model reads back to the same scores
    for name, parameter in model.model.named_parameters():
        parameter.requires_grad_(not (name.startswith("bert.embeddings.word") or ".layer.0." in name))
    save_trained_weights(model.model, tmp_path, {"command": "test"})
    (again,) = load_span_model(tmp_path).best_spans("Who directs the Kelso Observatory?", [text])
    assert again.text == found.text and again.score == pytest.approx(found.score, abs=0.05)
