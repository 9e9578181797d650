from rag.answer import IDK, answer_question, parse_output
from rag.prompting import Passage, completion_prompt, fit_passages
from rag.text import contains_answer, normalise
from rag.types import SearchResult


class ScriptedGenerator:
    """Returns a fixed completion and records the prompts it saw."""

    name = "scripted"
    context_window = 2048
    has_chat_template = False

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, prompt, max_new_tokens=48, stop=("\n",)):
        self.prompts.append(prompt)
        yield from self.reply.split(" ")[:1]
        rest = self.reply.split(" ")[1:]
        for word in rest:
            yield " " + word

    def generate(self, prompts, max_new_tokens=48, stop=("\n",)):
        return ["".join(self.stream(p)) for p in prompts]


class ListRetriever:
    def __init__(self, results):
        self.results = results
        self.calls = []

    def search(self, query, k=4, user=None):
        self.calls.append((query, k, user))
        return self.results[:k]


def result(rank, source, text, score=0.6):
    return SearchResult(rank, score, source, 100 + rank, text, 0, len(text))


PASSAGES = [
    result(1, "fleet/skarv.md", "The Skarv's home port is Vardo and it carries twelve crew.", 0.7),
    result(2, "budget/2031.txt", "The 2031 fleet budget is NOK 18.4 million.", 0.5),
]


def test_grounded_answer_cites_the_passage_it_names():
    generator = ScriptedGenerator("NOK 18.4 million [2]")
    answer = answer_question(ListRetriever(PASSAGES), generator, "What is the budget?", user="alice")
    assert not answer.abstained and answer.answer == "NOK 18.4 million"
    assert [(c.n, c.source, c.chunk_id) for c in answer.citations] == [(2, "budget/2031.txt", 102)]
    assert set(answer.timings) == {"retrieval", "generation", "total"}
    assert "[1] (fleet/skarv.md)" in generator.prompts[0] and "[2] (budget/2031.txt)" in generator.prompts[0]
    assert generator.prompts[0].rstrip().endswith("Question: What is the budget?\nAnswer:")


def test_citation_falls_back_to_the_passage_containing_the_answer():
    answer = answer_question(ListRetriever(PASSAGES), ScriptedGenerator("Vardo [2]"), "Home port?")
    assert [c.n for c in answer.citations] == [1]


def test_model_unknown_abstains():
    answer = answer_question(ListRetriever(PASSAGES), ScriptedGenerator("unknown"), "Who is the captain?")
    assert answer.abstained and answer.answer == IDK and answer.citations == []


def test_answer_not_in_passages_is_not_given():
    answer = answer_question(ListRetriever(PASSAGES), ScriptedGenerator("Captain Ahab [1]"), "Who is the captain?")
    assert answer.abstained and "not in the passages" in answer.reason


def test_low_retrieval_score_abstains_without_calling_the_model():
    generator = ScriptedGenerator("Vardo")
    weak = [result(1, "a.txt", "Vardo is cold.", score=0.05)]
    answer = answer_question(ListRetriever(weak), generator, "What is the capital of Peru?")
    assert answer.abstained and generator.prompts == []
    assert answer_question(ListRetriever([]), generator, "anything").abstained


def test_user_and_k_reach_the_retriever():
    retriever = ListRetriever(PASSAGES)
    answer_question(retriever, ScriptedGenerator("Vardo"), "Home port?", user="bob", k=2)
    assert retriever.calls == [("Home port?", 2, "bob")]


def test_streaming_callback_sees_the_tokens():
    seen = []
    answer_question(ListRetriever(PASSAGES), ScriptedGenerator("twelve [1]"), "Crew?", on_token=seen.append)
    assert "".join(seen) == "twelve [1]"


def test_parse_output_ignores_out_of_range_citations():
    assert parse_output(' "Vardo" [1] [7]', 2) == ("Vardo", [1])


def test_normalise_and_contains():
    assert normalise("The  Quick, brown—fox!") == "quick brown fox"
    assert contains_answer("It costs EUR 4.35 million in total.", "eur 4.35 Million")
    assert not contains_answer("It costs 14.35 million.", "4.35 million")


def test_fit_passages_trims_passages_never_the_question():
    long = [Passage(i, f"d{i}.txt", "word " * 300) for i in range(1, 5)]
    question = "What is the very specific question here?"
    kept = fit_passages(question, long, completion_prompt, lambda t: len(t.split()), budget=500)
    prompt = completion_prompt(question, kept)
    assert len(prompt.split()) <= 500 and question in prompt and len(kept) < 4


# --- the extractive reader, with a scripted span-choosing generator ---------------------------------------------

from fakes import HashEmbedder  # noqa: E402
from rag.answer_types import answers_type, expected_type  # noqa: E402
from rag.generation import Extraction  # noqa: E402
from rag.key_terms import key_terms, missing_terms  # noqa: E402
from rag.text import segments  # noqa: E402


class ScriptedExtractor(ScriptedGenerator):
    """Picks the first allowed span that contains ``reply`` (or "unknown"), as constrained decoding would."""

    def extract(self, prompt, spans, max_new_tokens=16, abstain="unknown", prefix=""):
        self.prompts.append(prompt)
        self.spans = list(spans)
        if self.reply != abstain and not any(self.reply in s for s in spans):
            raise AssertionError(f"{self.reply!r} is not a span of {spans}")
        return Extraction(self.reply, self.mean_logprob, self.first_logprob, -6.0)

    mean_logprob = -0.5  # sure enough to keep the best sentence's reading
    first_logprob = -1.0


class EmbeddingRetriever(ListRetriever):
    def __init__(self, results):
        super().__init__(results)
        self.embedder = HashEmbedder(256)


def test_extractive_reader_quotes_a_span_and_cites_its_chunk():
    generator = ScriptedExtractor("NOK 18.4 million")
    answer = answer_question(EmbeddingRetriever(PASSAGES), generator, "What is the 2031 fleet budget?")
    assert not answer.abstained and answer.answer == "NOK 18.4 million"
    assert [(c.n, c.source, c.chunk_id) for c in answer.citations] == [(2, "budget/2031.txt", 102)]
    assert "The 2031 fleet budget is NOK 18.4 million" in generator.prompts[0]
    assert all(any(ch.isdigit() for ch in s) for s in generator.spans)  # "what is the budget" wants a number


def test_extractive_reader_abstains_when_the_model_says_unknown():
    answer = answer_question(
        EmbeddingRetriever(PASSAGES), ScriptedExtractor("unknown"), "What is the 2031 fleet budget?"
    )
    assert answer.abstained and answer.answer == IDK and "do not answer" in answer.reason


def test_an_answer_that_only_repeats_the_question_is_an_abstention():
    answer = answer_question(
        EmbeddingRetriever(PASSAGES), ScriptedExtractor("Skarv"), "What is the home port of the Skarv?"
    )
    assert answer.abstained and answer.answer == IDK and "repeats the question" in answer.reason


def test_an_unsure_reading_looks_wider_then_abstains_if_still_unsure():
    generator = ScriptedExtractor("Vardo")
    generator.mean_logprob = -2.0  # below SURE_LOGPROB and MIN_WIDE_LOGPROB
    answer = answer_question(EmbeddingRetriever(PASSAGES), generator, "What is the ship's home port?")
    assert len(generator.prompts) == 2 and "[2]" not in generator.prompts[0] and "[2]" in generator.prompts[1]
    assert answer.abstained and "unsure" in answer.reason
    generator = ScriptedExtractor("Vardo")
    generator.mean_logprob = -1.0  # unsure of the best sentence alone, sure enough over the wider reading
    answer = answer_question(EmbeddingRetriever(PASSAGES), generator, "What is the ship's home port?")
    assert len(generator.prompts) == 2 and not answer.abstained and answer.answer == "Vardo"


def test_a_span_the_model_would_not_start_on_its_own_is_an_abstention():
    generator = ScriptedExtractor("NOK 18.4 million")
    generator.first_logprob = -3.5  # under MIN_FIRST_LOGPROB
    answer = answer_question(EmbeddingRetriever(PASSAGES), generator, "What is the 2031 fleet budget?")
    assert answer.abstained and "on its own" in answer.reason


def test_an_answer_from_a_sentence_about_something_else_is_an_abstention():
    # Of the question's 11 content words the sentence holding "twelve" covers 2 (Skarv, crew): under 0.2, abstain.
    # The same span for a question the sentence does cover is given.
    question = "How many Skarv crew members receive the annual winter bonus payment from headquarters every december?"
    answer = answer_question(EmbeddingRetriever(PASSAGES), ScriptedExtractor("twelve"), question)
    assert answer.abstained and "about something else" in answer.reason
    question = "How many crew does the Skarv carry?"
    answer = answer_question(EmbeddingRetriever(PASSAGES), ScriptedExtractor("twelve"), question)
    assert not answer.abstained and answer.answer == "twelve"


def test_a_name_no_passage_mentions_abstains_without_the_model():
    generator = ScriptedExtractor("NOK 18.4 million")
    answer = answer_question(EmbeddingRetriever(PASSAGES), generator, "What is the 2031 fleet budget in Copenhagen?")
    assert answer.abstained and "copenhagen" in answer.reason and generator.prompts == []


def test_a_sentence_about_another_year_is_not_read():
    # 2032 is in the passages, but the only sentence with an amount is about 2031: nothing answers, the model is
    # not asked. Asked about 2031, the same sentence answers.
    passages = [
        result(1, "budget/2031.txt", "The 2031 fleet budget is NOK 18.4 million.", 0.7),
        result(2, "budget/plans.txt", "The fleet plan for 2032 adds a second survey drone.", 0.6),
    ]
    generator = ScriptedExtractor("NOK 18.4 million")
    answer = answer_question(EmbeddingRetriever(passages), generator, "What is the 2032 fleet budget?")
    assert answer.abstained and generator.prompts == []
    answer = answer_question(EmbeddingRetriever(passages), generator, "What is the 2031 fleet budget?")
    assert not answer.abstained and answer.answer == "NOK 18.4 million"


def test_an_answer_whose_own_clause_names_another_year_is_an_abstention():
    # The minutes are dated 2031, so the sentence is read for a 2031 question; its answer is given for 2030.
    text = "The board proposes a dividend of NOK 3.10 per share for 2030."
    minutes = SearchResult(1, 0.7, "board/minutes.md", 9, text, 0, len(text), heading="Board minutes, 18 March 2031")
    generator = ScriptedExtractor("NOK 3.10")
    answer = answer_question(EmbeddingRetriever([minutes]), generator, "What is the dividend per share for 2031?")
    assert answer.abstained and "2030, not 2031" in answer.reason and len(generator.prompts) == 1
    answer = answer_question(EmbeddingRetriever([minutes]), generator, "What dividend per share is proposed for 2030?")
    assert not answer.abstained and answer.answer == "NOK 3.10"


def test_a_contract_number_question_is_not_answered_by_a_count():
    passages = [result(1, "sales/pipeline.md", "Nordhavn Aquaculture orders 120 TideSense T7 gauges.", 0.7)]
    question = "What is the contract number with Nordhavn Aquaculture?"
    answer = answer_question(EmbeddingRetriever(passages), ScriptedExtractor("120"), question)
    assert answer.abstained and "'120' is no number or code" in answer.reason
    passages = [result(1, "finance/contracts.txt", "Nordhavn Aquaculture: contract number NA-5520.", 0.7)]
    answer = answer_question(EmbeddingRetriever(passages), ScriptedExtractor("NA-5520"), question)
    assert not answer.abstained and answer.answer == "NA-5520"


def test_a_table_row_for_another_city_does_not_answer():
    # Trondheim is in the retrieved chunk, but not in any row of the per diem table: no answer, even though the
    # rows look like one. The same table answers for a city it lists.
    text = "| City | Per diem |\n|---|---|\n| Oslo | NOK 780 |\n| Bergen | NOK 720 |\n\nRail is preferred to Trondheim."
    passages = [result(1, "travel-policy.md", text, 0.7)]
    answer = answer_question(EmbeddingRetriever(passages), ScriptedExtractor("NOK 780"), "Per diem for Trondheim?")
    assert answer.abstained and answer.answer == IDK
    answer = answer_question(EmbeddingRetriever(passages), ScriptedExtractor("NOK 720"), "Per diem for Bergen?")
    assert not answer.abstained and answer.answer == "NOK 720"


def test_the_documents_opening_names_what_its_sentences_are_about():
    sentence = "Readings from 187 stations arrived late."
    question = "How many Harbourlink stations delivered readings late?"
    bare = SearchResult(1, 0.7, "incident.txt", 5, sentence, 900, 940)
    headed = SearchResult(1, 0.7, "incident.txt", 5, sentence, 900, 940, lead="Service: Harbourlink telemetry")
    for passage, answered in ((headed, True), (bare, False)):
        retriever = EmbeddingRetriever([passage, result(2, "status.txt", "Harbourlink status page notice.")])
        answer = answer_question(retriever, ScriptedExtractor("187 stations"), question)
        assert answer.abstained != answered and (answer.answer == "187 stations") == answered


def test_off_topic_question_abstains_without_the_model():
    generator = ScriptedExtractor("Vardo")
    answer = answer_question(EmbeddingRetriever(PASSAGES), generator, "Quantum chromodynamics lattice gauge theory?")
    assert answer.abstained and generator.prompts == [] and answer.reason.startswith("no passage relevant")


def test_segments_keep_numbers_whole_and_split_cells_and_clauses():
    assert segments("| Hamburg | EUR 64 | EUR 32 |") == ["Hamburg", "EUR 64", "EUR 32"]
    assert segments("It costs NOK 12,500 (VAT 3.5%), paid monthly.") == [
        "It costs NOK 12,500",
        "VAT 3.5%",
        "paid monthly",
    ]


def test_key_terms_and_question_types():
    assert key_terms("What is the per diem for Copenhagen in 2029?") == ["copenhagen", "2029"]
    assert key_terms("How many interns does HTI employ in Q1?") == []  # acronyms are often spelled out
    assert missing_terms("Per diem for Copenhagen?", PASSAGES) == ["copenhagen"]
    assert missing_terms("Where is the Skarv's home port?", PASSAGES) == []
    assert [expected_type(q) for q in ("When is it?", "How many crew?", "Who leads?", "Which app?")] == [
        "date",
        "number",
        "person",
        None,
    ]


def test_a_span_answers_the_wanted_type_only_with_something_the_question_does_not_say():
    question = "What is the 2031 budget for project KESTREL-7?"
    assert not answers_type("The 2031 budget was approved by", "number", question)
    assert answers_type("NOK 12.5 million", "number", question)
    assert answers_type("07:30", "date", "When does the Brennvik office open?")
    assert not answers_type("in 2031", "date", "When did it open in 2031?")
    assert not answers_type("Kvitsand Harbour Authority", "person", "Who is the harbour master at Kvitsand?")
    assert answers_type("Per Aasen", "person", "Who is the harbour master at Kvitsand?")
    assert not answers_type("Per Aasen", None, "Which app?")


def test_a_date_or_a_year_does_not_answer_how_much():
    question = "For how much will HTI acquire Marelius Sensors?"
    for date in ("30 June 2031", "June 30, 2031", "March 2031", "in 2031"):
        assert not answers_type(date, "number", question), date
    for amount in ("NOK 64 million", "3 hours 40 minutes", "2,031 people"):
        assert answers_type(amount, "number", question), amount


def test_units_rejoin_hard_wrapped_sentences_and_carry_a_plain_text_label():
    from rag.reader import split_units
    from rag.types import SearchResult

    text = (
        "Sildre Logistics\n"
        "  Contract number: SL-4471\n"
        "  Scope: freight of finished buoys from Brennvik to customers all over Northern Europe\n"
        "  Value: NOK 2.35 million per year\n"
        "\n"
        "Note: the Nordlys Cloud contract replaced an earlier hosting agreement, number NC-1874, which ended on\n"
        "28 February 2030.\n"
    )
    result = SearchResult(1, 0.9, "finance/vendor-contracts.txt", 7, text, 0, len(text))
    units = {unit.text: unit for unit in split_units(result, 0)}
    assert units["Contract number: SL-4471"].context == "vendor contracts > Sildre Logistics"
    assert units["Value: NOK 2.35 million per year"].context == "vendor contracts > Sildre Logistics"  # not joined
    assert units["Value: NOK 2.35 million per year"].before.startswith("Scope: freight")
    note = next(t for t in units if t.startswith("Note:"))
    assert note.endswith("which ended on 28 February 2030.")  # one sentence again
    assert units[note].context == "vendor contracts"  # the blank line ended the label's block


def test_key_terms_match_across_accents_hyphens_and_ordinals():
    passage = [result(1, "history.txt", "Hervé signed the treaty of Saint-Clair-sur-Epte in the 10th century.")]
    assert missing_terms("When did Herve sign at Clair in the 10th century?", passage) == []
    assert missing_terms("What happened in the 11th century?", passage) == ["11th"]


def test_a_number_word_answers_how_many():
    assert answers_type("two", "number", "How many customaries does Norman law have?")
    assert not answers_type("the customaries", "number", "How many customaries does Norman law have?")


def test_a_money_question_is_answered_by_an_amount_or_not_at_all():
    question = "What is the 2031 budget for project KESTREL-7?"
    assert expected_type(question) == "money" and expected_type("How long is fully paid parental leave?") != "money"
    assert answers_type("NOK 12.5 million", "money", question) and not answers_type("6 metres deep", "money", question)
    tank = [result(1, "news.md", "The calibration tank in lab B2 is back in service and is 6 metres deep.", 0.7)]
    generator = ScriptedExtractor("6 metres deep")
    answer = answer_question(
        EmbeddingRetriever(tank), generator, "What is the budget of the calibration tank in lab B2?"
    )
    assert answer.abstained and "no amount of money" in answer.reason and generator.prompts == []
