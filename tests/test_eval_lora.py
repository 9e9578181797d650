"""LoRA training on the real bundled model: a few steps must change the model's answers."""

import pytest

from eval.lora import Example, LoraSettings, closed_book_prompt, cloze_pairs, train_lora


def test_cloze_questions_blank_a_name_or_number_of_the_sentence():
    chunks = ["The ferry Vestri sails from Brennvik at 06:40 every weekday morning."]
    cloze = cloze_pairs(chunks, seed=0)
    assert cloze and "___" in cloze[0][0] and cloze[0][1] in chunks[0]


@pytest.mark.slow
def test_a_few_lora_steps_change_the_answers():
    from rag.generation import HFGenerator, load_causal_lm

    model, tokenizer = load_causal_lm()
    question = "What is the code name of the Brennvik night ferry?"
    before = HFGenerator(model, tokenizer, "base").generate([closed_book_prompt(question)], 8)[0]
    examples = [Example(closed_book_prompt(question), " Zorblax\n")] * 12 + [
        Example(closed_book_prompt("What is the Brennvik night ferry called?"), " Zorblax\n")
    ] * 4
    settings = LoraSettings(epochs=4, batch_size=4, learning_rate=3e-3, patience=4, max_tokens=32)
    lora, stats = train_lora(model, tokenizer, examples, settings)
    after = HFGenerator(lora, tokenizer, "lora").generate([closed_book_prompt(question)], 8)[0]
    assert "Zorblax" not in before
    assert "Zorblax" in after
    assert stats["training_tokens"] > 0 and 0 < stats["adapter_share"] < 0.05
