"""Reader settings per model pair, the learned answerability gate, its fitting, and the shared word lists."""

import numpy as np
import pytest

from eval.fit_reader import fit_logistic, pick, reaches, train_model, wilson, without_span_model
from eval.metrics import is_abstention as scorer_abstains
from eval.reader_data import split_articles
from rag.answer_types import has_type
from rag.answerability import SECOND_SIGNALS, AnswerabilityModel, feature_names
from rag.lexicon import is_abstention
from rag.reader_config import ReaderConfig, ReaderSettings, load_settings, settings_filename


def test_settings_round_trip_and_are_found_for_their_pair_only(tmp_path, monkeypatch, capsys):
    model = AnswerabilityModel(("echo",), [0.0] * 24, [1.0] * 24, [0.5] * 24, -0.25)
    assert len(feature_names(("echo",))) == 24
    names = feature_names(("model_unknown",), SECOND_SIGNALS)
    judge = AnswerabilityModel(
        ("model_unknown",), [0.0] * len(names), [1.0] * len(names), [0.1] * len(names), 0.5, SECOND_SIGNALS
    )
    settings = ReaderSettings(ReaderConfig(min_first_logprob=-2.5), model, "emb/one", "gen-two", {"seed": 3})
    settings.span_answers = judge
    path = settings.save(tmp_path)
    assert path.name == settings_filename("emb/one", "gen-two")
    monkeypatch.setenv("RAG_READER_DIR", str(tmp_path))
    load_settings.cache_clear()
    loaded = load_settings("emb/one", "gen-two")
    assert loaded.config.min_first_logprob == -2.5 and loaded.provenance == {"seed": 3}
    assert loaded.answerability.probability({}) == pytest.approx(model.probability({}))
    signals = {"span_margin": 2.0, "span_lead": 1.0, "gate:model_unknown": 1.0}
    assert loaded.span_answers.names == SECOND_SIGNALS
    assert loaded.span_answers.probability(signals) == pytest.approx(judge.probability(signals))
    other = load_settings("emb/one", "another-generator")  # no calibration for this pair: defaults, with a warning
    assert other.config == ReaderConfig() and other.answerability is None
    assert "no reader calibration" in capsys.readouterr().err
    load_settings.cache_clear()


def test_logistic_regression_learns_a_separable_signal():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] > 0).astype(float)
    weights, _ = fit_logistic(x, y)
    assert weights[0] > 2 and abs(weights[1]) < 0.5


def test_replayed_decisions_follow_hard_gates_and_the_learned_threshold():
    def row(correct, logprob, **gates):
        signals = {"first_logprob": logprob, **{f"gate:{g}": 1.0 for g in gates}}
        return {"id": str(logprob), "group": "g", "answer": "x", "code": "", "correct": correct, "signals": signals}

    rows = [row(True, -0.1 * i) for i in range(20)] + [row(False, -4 - 0.1 * i) for i in range(20)]
    model = train_model(rows, ("off_topic", "model_unknown"))
    first, last = (model.probability(r["signals"]) for r in (rows[0], rows[-1]))
    assert pick(rows[0], (), first, None, 0.5) == "first" and pick(rows[-1], (), last, None, 0.5) == ""
    assert not reaches(row(True, -0.1, echo=1), ("echo",))
    assert reaches(row(True, -0.1, echo=1), ())


def test_a_gate_fitted_without_the_span_model_does_not_load_it():
    def row(correct, agrees):
        signals = {"span_agrees": agrees, "span_margin": 3.0 * agrees, "first_logprob": -1.0}
        return {
            "id": f"{correct}{agrees}",
            "group": "g",
            "answer": "x",
            "code": "",
            "correct": correct,
            "signals": signals,
        }

    rows = [row(True, 0.8 + 0.01 * i) for i in range(20)] + [row(False, 0.01 * i) for i in range(20)]
    with_span = train_model(rows, ("off_topic", "model_unknown"))
    without = train_model(without_span_model(rows), ("off_topic", "model_unknown"))
    assert with_span.weighs_span_model and not without.weighs_span_model
    assert ReaderSettings(answerability=with_span).reads_span_model
    assert not ReaderSettings(answerability=without).reads_span_model
    assert not ReaderSettings().reads_span_model  # no learned gate, no span model to load


def test_trained_models_and_the_gate_learn_on_different_articles_and_none_on_the_held_out_ones():
    pool = {"data": [{"title": f"Article {n:02d}", "paragraphs": []} for n in range(20)]}
    split = split_articles(pool, seed=0)
    assert (len(split.learn), len(split.calibration), len(split.holdout)) == (12, 4, 4)
    assert len({*split.learn, *split.calibration, *split.holdout}) == 20
    assert split_articles(pool, seed=0) == split and split_articles(pool, seed=1) != split


def test_wilson_interval():
    assert wilson(0, 0) == [0.0, 0.0]
    low, high = wilson(45, 100)
    assert 0.35 < low < 0.45 < high < 0.55


@pytest.mark.parametrize(
    "text", ["USD 1,200", "EUR 89", "GBP 40", "JPY 3,200", "INR 800", "CAD 40", "$12", "£3", "€5", "¥500", "₹800"]
)
def test_money_in_any_currency(text):
    assert has_type(f"the fee is {text} a night", "money")


def test_no_money_without_a_currency():
    for text in ("all 40 rooms", "top 10 hits", "room 404", "the T8 model"):
        assert not has_type(text, "money")


def test_reader_and_scorer_agree_on_abstentions():
    for text in ("none", "None.", "unknown", "I don't know.", "Unknown - not stated", ""):
        assert is_abstention(text) and scorer_abstains(text)
    for text in ("Nonesuch Palace", "Amara Okafor", "12 May"):
        assert not is_abstention(text) and not scorer_abstains(text)


def test_the_bundled_pair_ships_its_calibration_with_the_data_licence(monkeypatch):
    from ingest.embedding import DEFAULT_EMBEDDER
    from rag.generation import DEFAULT_GENERATOR
    from rag.reader_config import SHIPPED_DIR
    from rag.span_reader import ARTIFACT_DIR as SPAN_ARTIFACT_DIR

    monkeypatch.delenv("RAG_READER_DIR", raising=False)
    load_settings.cache_clear()
    settings = load_settings(DEFAULT_EMBEDDER, DEFAULT_GENERATOR)
    load_settings.cache_clear()
    assert settings.path.parent == SHIPPED_DIR and settings.answerability is not None
    assert 0 < settings.config.min_answer_probability < 1
    assert "CC BY-SA 4.0" in settings.provenance["license"]
    assert "CC BY-SA 4.0" in (SHIPPED_DIR / "ATTRIBUTION.md").read_text()
    assert settings.reads_span_model  # the gate weighs the span model, whose weights ship beside the settings
    trained = [*SHIPPED_DIR.iterdir(), *SPAN_ARTIFACT_DIR.iterdir()]
    assert sum(p.stat().st_size for p in trained) <= 20 * 1024 * 1024  # the budget for everything trained
