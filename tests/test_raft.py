"""The RAFT-style reading examples, and the reader that runs the adapter without few-shot examples."""

from collections import Counter

from eval.raft import reading_examples
from fakes import HashEmbedder
from ingest.catalog import ChunkRecord
from rag.generation import Extraction
from rag.prompting import UNKNOWN, extractive_prefix
from rag.reader import ExtractiveReader
from rag.text import segments
from rag.types import SearchResult

TEXTS = {
    "fleet/skarv.md": (
        "The research vessel Skarv was launched on 9 March 2029 in Alesund. "
        "Her home port is Brennvik and she carries a crew of 14 scientists. "
        "Captain Ingrid Solberg has commanded the Skarv since the maiden voyage. "
        "The hull was built by Kvitsand Yards in a contract worth NOK 240 million."
    ),
    "fleet/terne.md": (
        "The survey boat Terne was launched on 2 June 2031 in Tromso. "
        "Engineer Mina Dahl leads the sonar team of the Terne and its 6 technicians. "
        "The Terne charts the fjords north of Brennvik every summer since 2032."
    ),
}


def _chunks():
    return [ChunkRecord(i, i, source, 0, len(text), None, "", text) for i, (source, text) in enumerate(TEXTS.items())]


def _parts(example):
    passages = example.prompt.split("Question: ")[0]
    question = example.prompt.split("Question: ")[1].split("\nAnswer:")[0]
    return passages, question


def test_reading_examples_ask_about_a_shown_span_or_teach_unknown():
    examples = reading_examples(_chunks(), seed=0, limit=16)
    assert len(examples) == 16
    answers = Counter("unknown" if e.target == f" {UNKNOWN}\n" else "span" for e in examples)
    assert 0.15 <= answers["unknown"] / len(examples) <= 0.45  # mostly answerable (eval.raft.SHARES: 0.3 not)
    for example in examples:
        assert example.prompt.startswith("Passages:\n[1] ") and example.prompt.endswith("\nAnswer:")
        assert example.target.startswith(" ") and example.target.endswith("\n")
        passages, question = _parts(example)
        span = example.target.strip()
        if span == UNKNOWN:
            continue
        # the span is quotable by the constrained decoder: inside one segment of a shown sentence
        shown = [line.split(") ", 1)[1] for line in passages.strip().splitlines()[1:]]
        assert any(span in piece for sentence in shown for piece in segments(sentence)), example
        assert span not in question  # the question asks for it instead of saying it


def test_swapped_questions_name_something_the_passages_do_not_say():
    examples = reading_examples(_chunks(), seed=3, limit=60)
    unknown = [e for e in examples if e.target == f" {UNKNOWN}\n"]
    near_misses = 0
    for example in unknown:
        passages, question = _parts(example)
        sentences = [line.split(") ", 1)[1] for line in passages.strip().splitlines()[1:]]
        words = [w.strip("?,.") for w in question.split()[1:]]
        closest = max(sentences, key=lambda sentence: sum(w in sentence for w in words))
        if sum(w in closest for w in words) < 0.6 * len(words):
            continue  # an "absent" example: the question's sentence is not shown
        # a question whose sentence is shown is taught "unknown" only when a name or number differs from it
        named = [w for w in words if w[:1].isupper() or w[:1].isdigit()]
        assert any(w not in closest for w in named), example
        near_misses += 1
    assert near_misses >= 3  # the swapped kind exists: its sentence is shown, one name or number differs


class _RecordingGenerator:
    def __init__(self):
        self.prefixes = []

    def extract(self, prompt, spans, max_new_tokens=16, abstain="unknown", prefix=""):
        self.prefixes.append(prefix)
        return Extraction(spans[0], -0.1, -0.1, -5.0)


def test_the_adapter_reads_without_few_shot_examples():
    result = SearchResult(1, 0.9, "fleet/skarv.md", 0, TEXTS["fleet/skarv.md"], 0, 10)
    embed = HashEmbedder().embed
    for trained_to_read, expected in ((False, extractive_prefix()), (True, "")):
        generator = _RecordingGenerator()
        generator.trained_to_read = trained_to_read
        ExtractiveReader(generator, embed).read("When was the Skarv launched?", [result])
        assert generator.prefixes and set(generator.prefixes) == {expected}


def _squad(questions):
    context = (
        "The Skarv was launched on 9 March 2029 in Alesund. Her home port is Brennvik. "
        "The hull was built by Kvitsand Yards for NOK 240 million."
    )
    return {"data": [{"title": "Skarv", "paragraphs": [{"context": context, "qas": questions}]}]}


def test_question_reading_examples_show_the_answers_sentence_and_teach_unknown_on_adversarial_twins():
    from eval.reading_adapter import question_reading_examples

    data = _squad(
        [
            {"id": "a", "question": "Where was the Skarv launched?", "answers": [{"text": "Alesund"}]},
            {
                "id": "u",
                "question": "Who bought the Skarv's hull?",
                "answers": [],
                "is_impossible": True,
                "plausible_answers": [{"text": "Kvitsand Yards"}],
            },
            # an answer that spans two sentences: the constrained decoder could not produce it, so no example
            {"id": "x", "question": "What happened?", "answers": [{"text": "Alesund. Her home port"}]},
        ]
    )
    examples = {e.target.strip(): e.prompt for e in question_reading_examples(data, ["Skarv"], seed=1, limit=10)}
    assert set(examples) == {"Alesund", UNKNOWN}
    assert "launched on 9 March 2029 in Alesund" in examples["Alesund"]
    assert "Question: Where was the Skarv launched?" in examples["Alesund"]
    assert "built by Kvitsand Yards" in examples[UNKNOWN]  # the sentence that looks like it answers
    assert question_reading_examples(data, ["Another article"], seed=1, limit=10) == []


def test_demo_reading_examples_come_from_the_train_split_only():
    from corpora import bundled_corpus
    from eval.qa import load_qa
    from eval.reading_adapter import DEMO_ROUNDS, demo_reading_examples

    corpus = bundled_corpus()
    qa = corpus.parent / "acme-qa.jsonl"
    examples = demo_reading_examples(corpus, qa, ("train",), seed=0)
    items = load_qa(qa)
    train = {q.question for q in items if q.split == "train" and q.answerable}
    held_out = {q.question for q in items if q.split != "train"}
    asked = {e.prompt.rsplit("Question: ", 1)[1].removesuffix("\nAnswer:") for e in examples}
    assert asked <= train and not asked & held_out and len(examples) <= DEMO_ROUNDS * len(train)
    for example in examples:  # the target is quoted verbatim from a passage shown
        assert example.target.strip() in example.prompt.split("\nQuestion: ")[0]


def test_a_model_whose_config_says_it_was_trained_to_read_is_read_without_examples():
    from types import SimpleNamespace

    from rag.generation import TRAINED_TO_READ, HFGenerator

    class Model:
        def __init__(self, **config):
            self.config = SimpleNamespace(max_position_embeddings=2048, **config)

        def forward(self, input_ids, past_key_values=None):
            raise AssertionError("not called")

    tokenizer = SimpleNamespace(chat_template=None)
    assert HFGenerator(Model(**{TRAINED_TO_READ: True}), tokenizer, "reading").trained_to_read
    assert not HFGenerator(Model(), tokenizer, "base").trained_to_read


def test_the_reading_adapter_builder_refuses_bad_arguments_by_name(tmp_path, capsys):
    import pytest

    from eval.reading_adapter import main

    pool = tmp_path / "pool.json"
    pool.write_text('{"data": []}')
    for argv, named in (
        (["--pool", str(tmp_path / "missing.json.gz")], "--pool"),
        (["--pool", str(pool), "--examples", "5"], "--examples"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--out", str(tmp_path / "out")])
        assert exit_.value.code == 2 and named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
