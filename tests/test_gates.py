"""Each abstention gate on its own, on vocabulary unlike the demo corpus's (an observatory, a bakery, a rowing club)."""

from rag.answer_types import expected_type
from rag.gates import (
    GATE_CODES,
    Conflict,
    Echo,
    FarFromQuestion,
    MissingTerm,
    ModelUnknown,
    NoTypedSpan,
    OffSubject,
    OffTopic,
    Reading,
    Unprompted,
    Unsure,
    WrongType,
    run_gates,
)
from rag.reader import Unit
from rag.reader_config import ReaderConfig
from rag.types import SearchResult


def result(text: str, source: str = "observatory/dome.md") -> SearchResult:
    return SearchResult(1, 0.6, source, 7, text, 0, len(text))


TELESCOPE = "The Merrow telescope has a 2.4 metre mirror and was first used on 14 May 1998."
BAKERY = "Juniper Bakery sells rye loaves for USD 6.50 each."


def reading(question: str, texts=(TELESCOPE,), **kwargs) -> Reading:
    results = [result(text) for text in texts]
    units = [Unit(text, "observatory", i) for i, text in enumerate(texts)]
    config = kwargs.pop("config", ReaderConfig())
    state = Reading(question, results, config, units=units, to_read=units, wanted=expected_type(question))
    state.relevance = kwargs.pop("relevance", [0.8] * len(units))
    state.eligible, state.eligible_relevance = units, list(state.relevance)
    for key, value in kwargs.items():
        setattr(state, key, value)
    return state


def test_off_topic_fires_under_the_sentence_score_floor():
    assert OffTopic().check(reading("How large is the mirror?", relevance=[0.3]))
    assert not OffTopic().check(reading("How large is the mirror?", relevance=[0.5]))
    assert OffTopic().check(reading("How large is the mirror?", texts=(), relevance=[]))


def test_missing_term_names_what_no_passage_mentions():
    assert "kestrel" in MissingTerm().check(reading("When was the Kestrel telescope first used?"))
    assert not MissingTerm().check(reading("When was the Merrow telescope first used?"))
    assert "ana li" in MissingTerm().check(reading("Who is Ana Li?"))


def test_off_subject_fires_when_the_sentences_about_the_subject_rank_far_below():
    state = reading("When was the Merrow telescope first used?", texts=(TELESCOPE, BAKERY), relevance=[0.9, 0.7])
    state.eligible, state.eligible_relevance, state.mismatch = state.units[1:], [0.7], "about rye"
    assert OffSubject().check(state) == "about rye"
    state.eligible_relevance = [0.88]
    assert not OffSubject().check(state)


def test_no_typed_span_wants_an_amount_for_a_price_question():
    assert "amount of money" in NoTypedSpan().check(reading("What is the price of a rye loaf?"))
    assert not NoTypedSpan().check(reading("What is the price of a rye loaf?", texts=(BAKERY,)))
    assert not NoTypedSpan().check(reading("Who built the telescope?"))  # "who" is lenient: no typed span needed


def test_model_unknown_and_echo():
    assert ModelUnknown().check(reading("Who built it?", answer="none"))
    assert not ModelUnknown().check(reading("Who built it?", answer="Ines Moreau"))
    state = reading("Who coaches the Tidewater rowing club?", answer="Tidewater rowing club")
    state.signals["echo"] = 1.0
    assert "repeats the question" in Echo().check(state)


def test_wrong_type_for_a_code_question():
    assert WrongType().check(reading("What is the ticket number?", answer="the north gate"))
    assert not WrongType().check(reading("What is the ticket number?", answer="TK-4410"))
    assert not WrongType().check(reading("Who built it?", answer="the north gate"))


def test_conflict_on_another_year():
    state = reading("What did a loaf cost in 2019?", answer="USD 6.50", clause="USD 6.50 in 2021")
    assert "2021, not 2019" in Conflict().check(state)
    assert not Conflict().check(reading("What did a loaf cost in 2019?", answer="USD 6.50", clause="USD 6.50 in 2019"))


def test_unsure_only_for_a_wide_reading():
    assert Unsure().check(reading("Who built it?", answer="x", seen=3, mean_logprob=-2.0))
    assert not Unsure().check(reading("Who built it?", answer="x", seen=1, mean_logprob=-2.0))
    assert not Unsure().check(reading("Who built it?", answer="x", seen=3, mean_logprob=-0.4))


def test_far_from_question_and_unprompted_follow_the_config():
    state = reading("Who built it?", answer="x")
    state.signals["near_coverage"] = 0.1
    assert FarFromQuestion().check(state)
    state.config = ReaderConfig(min_near_coverage=0.05)
    assert not FarFromQuestion().check(state)
    assert Unprompted().check(reading("Who built it?", answer="x", first_logprob=-4.0))
    assert not Unprompted().check(reading("Who built it?", answer="x", first_logprob=-1.0))


def test_run_gates_stops_at_the_first_hard_gate_and_records_every_gate_it_ran():
    state = reading("When was the Kestrel telescope first used?", relevance=[0.3])
    assert run_gates(state, "before")[0] == "off_topic"
    soft = reading("When was the Kestrel telescope first used?", config=ReaderConfig(hard_gates=("off_subject",)))
    soft.relevance = [0.3]
    assert run_gates(soft, "before") == ("", "")
    assert soft.signals["gate:off_topic"] == 1.0 and soft.signals["gate:missing_term"] == 1.0
    observed = reading("When was the Kestrel telescope first used?", relevance=[0.3])
    assert run_gates(observed, "before", observe=True) == ("", "")
    assert {f"gate:{c}" for c in ("off_topic", "missing_term", "off_subject", "no_typed_span")} <= set(observed.signals)
    assert len(GATE_CODES) == len(set(GATE_CODES))
