"""LoRA training on the real bundled model: a few steps must change the model's answers."""

import pytest

from eval.lora import Example, LoraSettings, build_examples, closed_book_prompt, cloze_pairs, train_lora
from eval.qa import QAItem


def test_training_examples_mask_prompts_and_fall_back_to_cloze():
    chunks = ["The ferry Vestri sails from Brennvik at 06:40 every weekday morning."]
    with_train = build_examples(chunks, [QAItem("q", "When does Vestri sail?", ("06:40",), "a.txt", "train")])
    assert with_train[0] == Example("", chunks[0])
    assert with_train[1] == Example(closed_book_prompt("When does Vestri sail?"), " 06:40\n")
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
