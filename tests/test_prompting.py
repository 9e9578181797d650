from rag.prompting import (
    UNKNOWN,
    Passage,
    chat_messages,
    completion_prompt,
    extractive_prompt,
    fit_passages,
    format_passages,
)

PASSAGES = [
    Passage(1, "fleet/skarv.md", "The Skarv carries\ntwelve crew."),
    Passage(2, "it/vpn.md", "Tokens last 90 days."),
]


def test_passages_are_numbered_with_their_sources_on_one_line_each():
    assert (
        format_passages(PASSAGES)
        == "[1] (fleet/skarv.md) The Skarv carries twelve crew.\n[2] (it/vpn.md) Tokens last 90 days."
    )


def test_completion_prompt_ends_with_the_question_and_teaches_citations_and_unknown():
    prompt = completion_prompt("  How many\ncrew?", PASSAGES)
    assert prompt.endswith("[2] (it/vpn.md) Tokens last 90 days.\nQuestion: How many crew?\nAnswer:")
    assert "[1]" in prompt.split("Passages:")[1] and f"Answer: {UNKNOWN}" in prompt
    assert "passages only" in prompt and "passage number" in prompt


def test_extractive_prompt_has_examples_without_citation_marks():
    prompt = extractive_prompt("How many crew?", PASSAGES)
    assert prompt.endswith("Question: How many crew?\nAnswer:")
    examples = prompt.split("Passages:")[1:-1]
    assert examples and all("Answer: " in e and " [" not in e.split("Answer: ")[1] for e in examples)
    assert f"Answer: {UNKNOWN}" in prompt


def test_chat_messages_carry_passages_and_question():
    [message] = chat_messages("How many crew?", PASSAGES)
    assert message["role"] == "user" and "[2] (it/vpn.md)" in message["content"]
    assert message["content"].endswith("Question: How many crew?")


def test_fit_passages_keeps_everything_that_fits():
    assert fit_passages("q?", PASSAGES, completion_prompt, lambda t: len(t.split()), budget=10_000) == PASSAGES


def test_fit_passages_drops_the_lowest_ranked_first_and_never_the_question():
    long = [Passage(i, f"d{i}.txt", f"w{i} " * 200) for i in range(1, 4)]
    count = lambda text: len(text.split())  # noqa: E731
    budget = count(completion_prompt("Where?", long[:1])) + 50
    kept = fit_passages("Where?", long, completion_prompt, count, budget)
    assert [p.n for p in kept] == [1] and count(completion_prompt("Where?", kept)) <= budget


def test_fit_passages_shortens_the_last_passage_when_even_one_is_too_long():
    huge = [Passage(1, "big.txt", "word " * 3000)]
    count = lambda text: len(text.split())  # noqa: E731
    kept = fit_passages("What is it?", huge, completion_prompt, count, budget=600)
    assert kept and len(kept[0].text.split()) < 3000 and "What is it?" in completion_prompt("What is it?", kept)
