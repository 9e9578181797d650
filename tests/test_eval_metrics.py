import json

import pytest

from eval.metrics import Scored, bootstrap_ci, contains_alias, exact_match, is_abstention, rates, score, token_f1
from eval.qa import QAFormatError, load_qa, squad_to_corpus
from rag.text import normalise


def test_squad_normalisation():
    assert normalise("The Eiffel Tower!") == "eiffel tower"
    assert normalise("  An   apple, a day ") == "apple day"
    assert normalise("NOK 12,500,000.") == "nok 12500000"


def test_alias_containment_needs_word_boundaries():
    assert contains_alias("It was NOK 12.5 million in 2031", ["12.5 million", "12,500,000"])
    assert contains_alias("12,500,000 kroner", ["12.5 million", "12,500,000"])
    assert not contains_alias("112.5 million", ["12.5 million"])
    assert not contains_alias("", ["x"])


def test_exact_match_and_f1_by_hand():
    assert exact_match("the Skarv", ["Skarv"])
    assert token_f1("red fish soup", ["fish soup"]) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert token_f1("nothing", ["fish soup"]) == 0.0


def test_abstention_detection():
    for text in ("I don't know.", "unknown", "", "Unknown - not stated"):
        assert is_abstention(text)
    assert not is_abstention("Oslo")


def test_rates_by_hand():
    outcomes = [
        score("Oslo", False, ["Oslo"]),  # correct
        score("Bergen", False, ["Oslo"]),  # wrong: hallucination
        score("I don't know", True, ["Oslo"]),  # abstained on answerable
        score("Paris", False, []),  # answered unanswerable: hallucination
        score("unknown", False, []),  # abstained correctly (detected from the text)
    ]
    r = rates(outcomes)
    assert r["accuracy"] == pytest.approx(1 / 5)
    assert r["hallucination_rate"] == pytest.approx(2 / 5)
    assert r["abstention_rate"] == pytest.approx(2 / 5)
    assert r["answerable_accuracy"] == pytest.approx(1 / 3)
    assert r["false_answer_rate"] == pytest.approx(1 / 2)
    assert r["accuracy_given_answered"] == pytest.approx(1 / 3)


def test_bootstrap_ci_on_a_known_sample():
    # 50 correct, 50 wrong: the accuracy is 0.5 and its 95% interval is about +-0.1 (normal approx 1.96*0.05).
    outcomes = [Scored(True, False, i < 50, i < 50, float(i < 50)) for i in range(100)]
    low, high = bootstrap_ci(outcomes, "accuracy", samples=2000, seed=1)
    assert 0.38 <= low <= 0.42 and 0.58 <= high <= 0.62
    assert bootstrap_ci(outcomes, "accuracy", samples=2000, seed=1) == (low, high)


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "1", "question": "q", "answers": []}\n{"id": "2", "answers": []}\n')
    with pytest.raises(QAFormatError, match=r"qa.jsonl:2: missing key 'question'"):
        load_qa(path)
    path.write_text('{"id": "1", "question": "q", "answers": [], "split": "holdout"}\n')
    with pytest.raises(QAFormatError, match="holdout"):
        load_qa(path)


def test_squad_becomes_a_corpus_and_unanswerables(tmp_path):
    squad = {
        "version": "v2.0",
        "data": [
            {
                "title": "Fjord Ferries",
                "paragraphs": [
                    {
                        "context": "The ferry Vestri sails at 06:40.",
                        "qas": [
                            {
                                "id": "a",
                                "question": "When does Vestri sail?",
                                "answers": [{"text": "06:40"}],
                                "is_impossible": False,
                            },
                            {"id": "b", "question": "Who owns Vestri?", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad))
    items = load_qa(path)
    assert [(q.id, q.answers, q.source) for q in items] == [
        ("a", ("06:40",), "Fjord_Ferries.txt"),
        ("b", (), None),
    ]
    corpus = squad_to_corpus(path, tmp_path / "corpus")
    assert (corpus / "Fjord_Ferries.txt").read_text().startswith("The ferry Vestri")
