"""What a question names and whether a passage names it: codes, quarters, conflicts, identifier questions."""

from rag.answer_types import answers_type, expected_type, has_type
from rag.key_terms import codes, conflicts, missing_terms, quarters, uncovered_terms
from rag.types import SearchResult


def test_codes_match_exactly_and_name_their_leading_parts():
    assert codes("Units below T7-00120 and the KESTREL-7 buoy; patent NO-345871; lab B2") == {
        "t7",
        "t700120",
        "kestrel7",
        "no345871",
        "b2",
    }
    assert codes("the 10th century, Q2 2031, 2nd-quarter results, version 3.4.1, level -1") == set()
    # A code differing in one digit is another product, whatever the rest of the sentence shares with the question
    assert uncovered_terms("What is the unit price of the TideSense T8?", "TideSense T7 costs EUR 4,850") == ["T8"]
    assert uncovered_terms("Who leads KESTREL-8?", "Project KESTREL-7. Project lead: Erin Moe.") == ["KESTREL-8"]
    assert uncovered_terms("Who leads KESTREL-7?", "Project KESTREL-7. Project lead: Erin Moe.") == []
    assert uncovered_terms("Which T7 units need a clock sync?", "Units below T7-00120 need a clock sync.") == []


def test_quarters_are_one_thing_however_they_are_written():
    assert quarters("Q1 2031, the second quarter, 3rd-quarter figures, First-quarter results") == {1, 2, 3}
    assert uncovered_terms("Revenue in the second quarter of 2031?", "First-quarter results 2031") == ["Q2"]
    assert uncovered_terms("Who won the Q1 2031 award?", "Tidewater Times - first quarter 2031") == []
    assert uncovered_terms("The 2nd-quarter results?", "Results for the second quarter") == []


def test_names_years_and_codes_are_missing_when_no_passage_mentions_them():
    results = [SearchResult(1, 0.8, "sales/price-list.pdf", 1, "TideSense T7: EUR 4,850 per unit.", 0, 33)]
    assert missing_terms("What does the TideSense T8 cost?", results) == ["T8"]
    assert missing_terms("What does the TideSense T7 cost in 2032?", results) == ["2032"]
    assert missing_terms("What does the TideSense T7 cost?", results) == []


def test_a_sentence_naming_another_year_quarter_weekday_or_code_conflicts():
    assert conflicts("What is the dividend per share for 2031?", "A dividend of NOK 3.10 per share for 2030.") == [
        "2030, not 2031"
    ]
    assert conflicts("What is the canteen's menu on Fridays?", "Fish soup is served every Wednesday.") == [
        "wednesday, not friday"
    ]
    assert conflicts("Revenue in the second quarter?", "Revenue for the first quarter was NOK 41.3 million.")
    assert conflicts("Battery life of the Murre W2?", "KESTREL-7 > Goals: Battery life of 26 months.")
    assert conflicts("Who is the head of marketing?", "Contact: Head of sales: Hana Lindqvist.") == [
        "sales, not marketing"
    ]
    assert conflicts("Salary band for a product manager?", "| Sales manager | 700,000 |") == ["sales, not product"]
    assert conflicts("Who is the head of HR?", "The head of People and culture is Fatima Okafor.") == []  # acronym
    # Naming the asked one as well, or naming none of the kind, is no conflict
    assert conflicts("Revenue in the first quarter of 2031?", "q1 2031 results: up on the first quarter of 2030") == []
    assert conflicts("What is the 2031 budget for training?", "| Training | NOK 2.1 million |") == []


def test_identifier_questions_want_a_code_or_a_long_number():
    assert expected_type("What is the contract number with Sildre Logistics?") == "identifier"
    assert expected_type("Which code do you show at the garage barrier?") == "identifier"
    assert expected_type("What is the Wi-Fi password for guests?") == "identifier"
    assert expected_type("What is the maximum number of nitrogen cylinders in the lab?") != "identifier"  # a count
    assert expected_type("What is the minimum password length?") == "number"
    assert has_type("Contract number: SL-4471", "identifier") and has_type("extension 4417", "identifier")
    assert not has_type("the 120 units are the second call-off", "identifier")
    assert not has_type("expected on 30 June 2031", "identifier")  # a year is no identifier
    question = "What is the contract number with Nordhavn Aquaculture?"
    assert not answers_type("Passwords are 14 characters long and are changed every 120 days", "identifier", question)
