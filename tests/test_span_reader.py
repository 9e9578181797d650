"""The span model behind the answerability gate's second opinion (rag.span_reader): span search within a window, the
signals the extractive reader records from it, and the shipped artifact (size, provenance, what it reads)."""

import json
import math

import pytest

from rag.answerability import SECOND_SIGNALS, AnswerabilityModel, feature_names
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


def test_the_reader_records_the_widest_margin_its_lead_and_how_far_the_two_readers_agree():
    model = FakeSpanModel([Span("USD 240", 0, 6.0, 1.0), Span("Tomas Rivera", 1, 9.0, 7.5)])
    found = span_signals(model, "What does the sleeper cost?", [_result("x"), _result("y")], "USD 240 per cabin")
    assert found.span.text == "USD 240"
    assert found.signals["span_margin"] == 5.0  # 6 - 1 beats 9 - 7.5
    assert found.signals["span_lead"] == 3.5  # over the other chunk's 1.5
    assert found.signals["span_agrees"] == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))
    disagreeing = span_signals(model, "What does the sleeper cost?", [_result("x"), _result("y")], "Chicago")
    assert disagreeing.signals["span_agrees"] == 0.0
    nothing = span_signals(FakeSpanModel([None]), "Who?", [_result("x")], "Ana")
    assert nothing.span is None and nothing.signals == {"span_margin": -20.0, "span_agrees": 0.0}


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


def _span_judge(bias: float):
    """A model of "the span model's span is right" that believes a wide margin, offset by ``bias``."""
    names = feature_names(("model_unknown",), SECOND_SIGNALS)
    weights = [1.0 if name == "span_margin" else 0.0 for name in names]
    return AnswerabilityModel(("model_unknown",), [0.0] * len(names), [1.0] * len(names), weights, bias, SECOND_SIGNALS)


def test_where_the_generator_says_unknown_a_likelier_span_of_the_span_model_answers_and_cites_its_chunk():
    from fakes import HashEmbedder, RecordingExtractor
    from rag.reader import ExtractiveReader
    from rag.reader_config import ReaderConfig, ReaderSettings

    results = [
        SearchResult(
            rank=1, score=0.6, source="cafe.md", chunk_id=7, text="The station cafe opens at 9.", start=0, end=28
        ),
        SearchResult(
            rank=2,
            score=0.5,
            source="fares.md",
            chunk_id=8,
            text="The Vienna sleeper costs EUR 89 a cabin.",
            start=0,
            end=40,
        ),
    ]
    span_model = FakeSpanModel([None, Span("EUR 89", 1, 6.0, 1.0)])
    config = ReaderConfig(min_sentence_score=-10.0, min_answer_probability=0.5)

    def read(bias: float):
        settings = ReaderSettings(config, span_answers=_span_judge(bias))
        reader = ExtractiveReader(RecordingExtractor("unknown"), HashEmbedder().embed, settings, span_model=span_model)
        return reader.read("What does the Vienna sleeper cost?", results)

    trusted = read(0.0)  # margin 5: p = 0.99
    assert (trusted.answer, trusted.abstained, trusted.cited) == ("EUR 89", False, [1])
    assert trusted.signals["second_probability"] > 0.99 and trusted.second.text == "EUR 89"
    doubted = read(-10.0)  # p = 0.007: the generator's "unknown" stands
    assert doubted.abstained and doubted.code == "model_unknown"
    assert ReaderSettings(span_answers=_span_judge(0.0)).reads_span_model
    span_model.spans = [None, Span("none", 1, 6.0, 1.0)]  # a span that says nothing is never an answer
    assert read(0.0).abstained


def test_the_replayed_choice_takes_the_likelier_span_and_scores_the_one_it_took():
    from eval.fit_reader import measure, pick

    hard = ("off_topic", "model_unknown", "missing_term")
    right_second = {
        "answerable": True,
        "answer": "x",
        "code": "",
        "correct": False,
        "second": "y",
        "second_correct": True,
        "signals": {},
    }
    assert pick(right_second, hard, 0.3, 0.8, 0.5) == "second"
    assert pick(right_second, hard, 0.6, 0.6, 0.5) == "first"  # a tie keeps the generator's span
    assert pick(right_second, hard, 0.3, 0.4, 0.5) == ""
    assert pick(right_second, hard, 0.3, None, 0.0) == "first"  # no judge of the span model: never its span
    unknown = {**right_second, "answer": "I don't know.", "code": "model_unknown"}
    assert pick(unknown, hard, None, 0.8, 0.5) == "second"  # the generator said unknown; the span model may answer
    gated = {**right_second, "signals": {"gate:missing_term": 1.0}}
    assert pick(gated, hard, 0.9, 0.9, 0.5) == ""  # a hard gate on the passages holds for either span
    unanswerable = {**right_second, "answerable": False, "second_correct": False}
    stats = measure([right_second, unanswerable], ["second", "first"])
    assert stats["answerable_accuracy"]["value"] == 1.0 and stats["false_answer_rate"]["value"] == 1.0
    assert measure([right_second], ["first"])["answerable_accuracy"]["value"] == 0.0


def test_gold_paragraph_scoring_counts_right_spans_and_ranks_answerable_margins_above_unanswerable():
    from eval.score_span_reader import margin_auc, score

    spans = {
        "Who founded Tidewater?": Span("Ana Li", 0, 9.0, 1.0),  # right, margin 8
        "When was Tidewater founded?": Span("Ana Li", 0, 3.0, 2.0),  # wrong span, margin 1
        "Who closed Tidewater?": Span("1999", 0, 1.0, 4.0),  # unanswerable, margin -3
    }

    class ByQuestion:
        def best_spans(self, question, texts):
            return [spans.get(question)]

    text = "Ana Li founded Tidewater in 1999."
    questions = [(q, text, answers) for q, answers in zip(spans, [("Ana Li",), ("1999",), ()])]
    questions.append(("Who sold Tidewater?", text, ()))  # no valid span at all: the lowest margin
    assert score(ByQuestion(), questions) == {
        "questions": 4,
        "answerable": 2,
        "best_span_right": 0.5,
        "margin_auc": 1.0,
    }
    # ties count half; a set without one of the two kinds has no AUC
    assert margin_auc([1.0, 0.0, 1.0], [True, True, False]) == 0.25
    assert math.isnan(margin_auc([1.0], [True]))


def test_a_training_run_shorter_than_ten_steps_still_has_a_learning_rate_schedule():
    from transformers import BertConfig, BertForQuestionAnswering

    from eval.train_span_reader import train

    tiny = BertForQuestionAnswering(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    rows = [{"input_ids": [2, 5, 3, 7, 8, 3], "token_type_ids": [0, 0, 0, 1, 1, 1], "start": 3, "end": 4}] * 3
    losses = train(tiny, rows, epochs=2, seed=0, device="cpu", autocast=False, batch_size=2, lr=1e-3)
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
