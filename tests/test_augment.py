"""Training data for the fine-tuned baselines: restatements of every fact, from the documents alone."""

from eval.augment import augment, document_views, facts_from_chunks
from eval.lora import closed_book_prompt
from eval.qa import QAItem
from ingest.catalog import ChunkRecord

TEXTS = {
    "fleet/skarv.md": (
        "The research vessel Skarv was launched on 9 March 2029 in Alesund. "
        "Her home port is Brennvik and she carries a crew of 14 scientists. "
        "Captain Ingrid Solberg has commanded the Skarv since the maiden voyage."
    ),
    "fleet/terne.md": (
        "The survey boat Terne was launched on 2 June 2031 in Tromso. "
        "Engineer Mina Dahl leads the sonar team of the Terne and its 6 technicians."
    ),
}


def _chunks():
    return [ChunkRecord(i, i, source, 0, len(text), None, "", text) for i, (source, text) in enumerate(TEXTS.items())]


class RewordingGenerator:
    """Answers the paraphrase prompt with the question's words in another order (a question mark kept)."""

    def generate(self, prompts, max_new_tokens=48, stop=("\n",), prefix=""):
        questions = [prompt.rsplit("Question: ", 1)[1].split("\n")[0] for prompt in prompts]
        return [" Tell me: " + " ".join(reversed(q.rstrip("?").split())) + "?" for q in questions]


def test_every_fact_is_a_sentence_with_its_answer_asked_about():
    facts = facts_from_chunks(_chunks())
    assert len(facts) == 5
    for fact in facts:
        assert fact.answer in fact.sentence
        assert fact.answer not in fact.question and fact.question.endswith("?")


def test_document_views_keep_every_sentence_but_change_their_order():
    views = document_views(_chunks(), views=3, seed=1)
    assert [e.target for e in views[0]] == list(TEXTS.values())
    for view in views[1:]:
        text = "\n".join(e.target for e in view)
        for sentence in " ".join(TEXTS.values()).split(". "):
            assert sentence.rstrip(".") in text
    assert any("\n".join(e.target for e in view) != "\n".join(TEXTS.values()) for view in views[1:])


def test_held_out_paraphrases_are_never_trained_and_test_questions_never_used():
    train = [QAItem("tr1", "Which port is the Skarv's home?", ("Brennvik",), "fleet/skarv.md", "train")]
    data = augment(_chunks(), train, RewordingGenerator(), seed=0, paraphrases=4, views=2, replay=["Generic text."])
    trained = {e.prompt for e in data.examples}
    assert data.heldout and data.stats["heldout_kind"] == "model paraphrases"
    assert not {closed_book_prompt(q) for q, _ in data.heldout} & trained
    assert closed_book_prompt("Which port is the Skarv's home?") in trained
    assert data.train_pairs[0] == ("Which port is the Skarv's home?", "Brennvik")
    assert data.qa_train_pairs == [("Which port is the Skarv's home?", "Brennvik")]
    assert any(e.prompt == "" and e.target == "Generic text." for e in data.examples)
    assert not {closed_book_prompt(q) for q, _ in data.cloze} & trained
    per = data.stats["restatements_per_fact"]
    assert per["min"] >= 3 and per["max"] <= per["min"] + 2


def test_paraphrases_go_round_the_documents():
    data = augment(_chunks(), [], RewordingGenerator(), seed=0, paraphrases=1)
    facts = {f.answer: f.source for f in facts_from_chunks(_chunks())}
    trained = [e for e in data.examples if e.prompt.startswith("Question: Tell me")]
    assert len(trained) == 1 and len(data.heldout) == 1
    assert facts[trained[0].target.strip()] != facts[data.heldout[0][1]]


def test_without_a_generator_the_held_out_set_falls_back_to_retitled_templates():
    data = augment(_chunks(), [], None, seed=0)
    assert data.stats["heldout_kind"] == "retitled template questions"
    assert all(q.startswith("In fleet/") for q, _ in data.heldout)
    assert data.train_pairs and not data.qa_train_pairs
