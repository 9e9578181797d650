import json

import numpy as np
import pytest

from ingest.common import ModelLoadError
from rag.generation import DEFAULT_GENERATOR, Extraction, first_stop, load_generator
from rag.model_files import bundled_model_dir
from rag.prompting import Passage, completion_prompt
from rag.reader import ExtractiveReader
from rag.types import SearchResult


def test_first_stop_finds_the_earliest_stop_sequence():
    assert first_stop("NOK 780\nQuestion: next", ("Question:", "\n")) == 7
    assert first_stop("NOK 780", ("\n",)) is None


def test_unknown_generator_names_it_and_says_what_works():
    with pytest.raises(ModelLoadError) as err:
        load_generator("no-such-org/no-such-model-xyz")
    message = str(err.value)
    assert "no-such-org/no-such-model-xyz" in message and DEFAULT_GENERATOR in message
    assert "local" in message and "nothing is downloaded" in message


def _snapshot(folder) -> dict[str, int]:
    """Every file under ``folder`` with its modification time: a load that converts or rewrites changes it."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def _ones(texts):
    return np.ones((len(texts), 4), dtype=np.float32) / 2.0  # every sentence equally relevant: the model decides


@pytest.mark.slow
def test_bundled_gemma_reads_a_grounded_span_and_reloads_fast_from_the_cache():
    generator = load_generator()  # converts the GGUF once per test run (session-scoped XDG_CACHE_HOME)
    assert generator.name == DEFAULT_GENERATOR and generator.context_window >= 8192
    passages = [
        SearchResult(1, 0.7, "fleet/skarv.md", 11, "The research ship Skarv has its home port in Vardo.", 0, 50),
        SearchResult(2, 0.6, "fleet/budget.md", 12, "The 2031 fleet budget is NOK 18.4 million.", 0, 44),
    ]
    read = ExtractiveReader(generator, _ones).read("What is the 2031 fleet budget?", passages)
    assert not read.abstained and "18.4 million" in read.answer and read.cited == [1]
    assert read.signals["answer_logprob"] > read.signals["abstain_logprob"]

    # Free generation with stop sequences, streamed piece by piece.
    prompt = completion_prompt("What is the home port of the Skarv?", [Passage(1, "fleet/skarv.md", passages[0].text)])
    pieces = list(generator.stream(prompt, max_new_tokens=12, stop=("\n",)))
    assert "Vardo" in "".join(pieces) and "\n" not in "".join(pieces)
    assert generator.generate([prompt], max_new_tokens=12) == ["".join(pieces)]

    cache = bundled_model_dir()
    before = _snapshot(cache)
    again = load_generator()
    assert _snapshot(cache) == before  # loaded from the cache: no second conversion, nothing rewritten
    found = again.extract("Colours: red, green.\nQuestion: Which colour comes first?\nAnswer:", ["red", "green"], 4)
    assert isinstance(found, Extraction) and found.text in {"red", "green", "unknown"}


def _varied_texts(vocab: list[str], count: int = 300) -> list[str]:
    """Plain, multilingual, whitespace-heavy and special-token text, plus random splices of vocabulary entries."""
    import random

    fixed = ["", " ", "  x  ", "\n\n", "tab\there\r\n", "Hello world", "NOK 18.4 million", "Vardø, Tromsø, Ålesund",
             "日本語のテキスト", "emoji 😀 and 👨‍👩‍👧", "العربية", "\u00a0\u200b", "a" * 200, "bytes \x00\x7f \ufffd",
             "<bos>", "<eos> <pad>x<unk>", "<mask>", "<start_of_turn>user\nhi<end_of_turn>\n", "[multimodal]",
             "Question: In which year?\nAnswer:"]  # fmt: skip
    rng = random.Random(7)
    texts = list(fixed)
    while len(texts) < count:
        pieces = [rng.choice(vocab) if rng.random() < 0.6 else rng.choice(fixed) for _ in range(rng.randint(1, 10))]
        texts.append(rng.choice(["", " ", "\n"]).join(pieces))
    return texts


@pytest.mark.slow
def test_the_bundled_tokenizer_shortcut_builds_what_autotokenizer_builds():
    from transformers import AutoTokenizer

    from rag.gemma_tokenizer import bundled_tokenizer

    folder = bundled_model_dir()
    fast = bundled_tokenizer(folder)
    reference = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert type(fast) is type(reference)
    assert fast.backend_tokenizer.to_str() == reference.backend_tokenizer.to_str()
    same = ["bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "all_special_ids", "chat_template"]
    for attribute in [*same, "padding_side", "model_max_length", "init_kwargs", "added_tokens_encoder"]:
        assert getattr(fast, attribute) == getattr(reference, attribute), attribute
    assert repr(fast._special_tokens_map) == repr(reference._special_tokens_map)
    assert len(fast) == len(reference) and fast.get_vocab() == reference.get_vocab()
    texts = _varied_texts(list(reference.get_vocab()))
    for special in (True, False):
        ids = fast(texts, add_special_tokens=special)["input_ids"]
        assert ids == reference(texts, add_special_tokens=special)["input_ids"]
        for row in ids[::7]:
            assert fast.decode(row) == reference.decode(row)
            assert fast.decode(row, skip_special_tokens=True) == reference.decode(row, skip_special_tokens=True)


@pytest.mark.slow
def test_the_bf16_copy_of_the_bundled_gemma_holds_its_weights_rounded_to_bf16():
    import torch
    from transformers import AutoModelForCausalLM

    from rag.generation import load_causal_lm
    from rag.model_files import BF16_COPY

    folder = bundled_model_dir()
    model, _ = load_causal_lm(dtype="bfloat16")  # writes the copy on first need
    assert model.dtype == torch.bfloat16 and model.name_or_path == str(folder)
    copy = AutoModelForCausalLM.from_pretrained(str(folder / BF16_COPY), dtype=torch.bfloat16).state_dict()
    direct = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16).state_dict()
    assert copy.keys() == direct.keys() and all(torch.equal(copy[key], direct[key]) for key in copy)
    assert load_causal_lm()[0].dtype == torch.float32  # LoRA training's default still reads the float32 original


def test_added_tokens_are_read_from_the_head_of_tokenizer_json_or_not_at_all(tmp_path):
    from rag.gemma_tokenizer import head_added_tokens

    file = tmp_path / "tokenizer.json"
    tokens = [
        {"id": 0, "content": "<pad>", "special": True},
        {"id": 1, "content": '"added_tokens": [', "special": False},
    ]
    file.write_text(json.dumps({"version": "1.0", "added_tokens": tokens, "model": {"vocab": {"a": 2}}}))
    assert head_added_tokens(file) == tokens
    assert head_added_tokens(file, head_bytes=60) is None  # cut off: the caller falls back to AutoTokenizer
    file.write_text(json.dumps({"version": "1.0", "model": {}}))
    assert head_added_tokens(file) is None


def test_a_bf16_copy_that_cannot_be_written_leaves_the_load_alone(tmp_path, capsys):
    from rag.model_files import BF16_COPY, write_bf16_copy

    class Unsaveable:
        def save_pretrained(self, folder, **_):
            raise OSError(28, "No space left on device")

    write_bf16_copy(Unsaveable(), tmp_path)
    assert not (tmp_path / BF16_COPY).exists() and list(tmp_path.iterdir()) == []
    assert "No space left" in capsys.readouterr().err


def _tiny_bpe_file(folder, merges):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4, " b": 5, "a b": 6, "[UNK]": 7}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def test_merges_rewritten_as_strings_load_the_same_tokenizer(tmp_path):
    from tokenizers import Tokenizer

    from rag.gemma_tokenizer import MERGES_MARK, merges_as_strings

    before = _tiny_bpe_file(tmp_path, [("a", "b"), ("ab", "c")])
    merges = lambda: json.loads((tmp_path / "tokenizer.json").read_text())["model"]["merges"]  # noqa: E731
    assert merges() == [["a", "b"], ["ab", "c"]]
    merges_as_strings(tmp_path)
    assert merges() == ["a b", "ab c"] and (tmp_path / MERGES_MARK).exists()
    after = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert after.to_str() == before.to_str()
    assert after.encode("abc cab ab").ids == before.encode("abc cab ab").ids == [4, 2, 3, 3]


def test_merges_with_a_space_stay_pairs(tmp_path):
    from rag.gemma_tokenizer import merges_as_strings

    _tiny_bpe_file(tmp_path, [("a", "b"), ("a", " b")])
    original = (tmp_path / "tokenizer.json").read_text()
    merges_as_strings(tmp_path)
    assert (tmp_path / "tokenizer.json").read_text() == original  # "a  b" could not be read back unambiguously


@pytest.mark.slow
def test_batched_decoding_gives_each_prompt_what_it_decodes_alone():
    from rag.generation import HFGenerator, load_causal_lm

    model, tokenizer = load_causal_lm(dtype="float32")  # in float32 a batch's shape cannot move a rounding
    generator = HFGenerator(model, tokenizer, "base")
    prompts = [
        "Question: What is the capital of Norway?\nAnswer:",
        "Question: Who wrote the play Hamlet, set in Denmark?\nAnswer:",
        "The three primary colours are",
        "Question: How many days are there in a week?\nAnswer:",
        "1, 2, 3,",
    ]
    for prefix in ("", "Answer briefly.\n\nQuestion: What is two plus two?\nAnswer: four\n\n"):
        alone = [generator.generate([p], 10, ("\n",), prefix=prefix)[0] for p in prompts]
        # batches of 3: uneven prompt lengths (left padding) and a second, smaller batch
        assert generator.generate(prompts, 10, ("\n",), prefix=prefix, batch_size=3) == alone
        assert all("\n" not in text for text in alone) and any(text.strip() for text in alone)

    # float32 on a CPU: the argmax came from rows of the output layer; reading the whole layer picks the same tokens
    assert generator._scorer is not None and generator._scorer.checked
    generator._scorer = None
    assert generator.generate(prompts, 10, ("\n",), prefix=prefix, batch_size=3) == alone


@pytest.mark.slow
def test_constrained_decoding_scores_a_few_rows_of_the_output_layer_as_the_whole_layer_would():
    generator = load_generator()
    prompt = (
        "The research ship Skarv has its home port in Vardo. Its 2031 budget is NOK 18.4 million.\n"
        "Question: What is the home port of the Skarv?\nAnswer:"
    )
    spans = ["The research ship Skarv has its home port in Vardo.", "Its 2031 budget is NOK 18.4 million."]
    decoder = generator.model.get_decoder()
    forward, calls = decoder.forward, []
    decoder.forward = lambda *args, **kwargs: calls.append(1) or forward(*args, **kwargs)
    rows = generator.extract(prompt, spans, 8)
    assert generator._scorer is not None and generator._scorer.checked  # float32 on a CPU: rows, checked once
    # one forward pass a generated token, and none for the newline that ends the span when nothing else may follow
    assert "Vardo" in rows.text and len(calls) == generator.count_tokens(" " + rows.text)

    generator._scorer = None  # the whole output layer at every step, as a model on a GPU is read
    whole = generator.extract(prompt, spans, 8)
    assert rows.text == whole.text
    assert all(abs(a - b) < 0.005 for a, b in zip(rows[1:], whole[1:]))  # log-probabilities: float16 normaliser

    # A model that changes its logits after the output layer (here capped) fails the check and is read whole
    del generator._scorer
    generator.model.config.final_logit_softcapping = 5.0
    capped = generator.extract(prompt, spans, 8)
    assert generator._scorer is None
    assert generator.extract(prompt, spans, 8) == capped
    assert capped.first_logprob != pytest.approx(whole.first_logprob, abs=0.01)  # the cap did change the scores
