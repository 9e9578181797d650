from rag.support import content_words, supports

PASSAGE = "The 2031 fleet budget is NOK 18.4 million, approved by Mina Dahl."


def test_verbatim_span_and_sentence_answers_are_supported():
    assert supports(PASSAGE, "NOK 18.4 million")
    assert supports(PASSAGE, "The budget for 2031 is NOK 18.4 million.")  # function words may differ
    assert supports(PASSAGE, "Mina Dahl approved it")


def test_an_added_fact_or_a_negation_is_not_supported():
    assert not supports(PASSAGE, "The 2032 fleet budget is NOK 18.4 million")
    assert not supports(PASSAGE, "NOK 18.4 million, approved by Ola Dahl")
    assert not supports(PASSAGE, "The budget isn't NOK 18.4 million")
    assert not supports(PASSAGE, "no")
    assert not supports(PASSAGE, "")


def test_content_words_keep_negations_and_drop_function_words():
    assert content_words("It was not approved by the board") == ["not", "approved", "board"]
    assert content_words("The team doesn't meet") == ["team", "not", "meet"]
