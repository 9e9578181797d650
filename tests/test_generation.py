import time

import numpy as np
import pytest

from ingest.errors import ModelLoadError
from rag.generation import DEFAULT_GENERATOR, Extraction, _first_stop, load_generator
from rag.prompting import Passage, completion_prompt
from rag.reader import ExtractiveReader
from rag.types import SearchResult


def test_first_stop_finds_the_earliest_stop_sequence():
    assert _first_stop("NOK 780\nQuestion: next", ("Question:", "\n")) == 7
    assert _first_stop("NOK 780", ("\n",)) is None


def test_unknown_generator_names_it_and_says_what_works():
    with pytest.raises(ModelLoadError) as err:
        load_generator("no-such-org/no-such-model-xyz")
    message = str(err.value)
    assert "no-such-org/no-such-model-xyz" in message and DEFAULT_GENERATOR in message
    assert "local" in message and "nothing is downloaded" in message


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

    started = time.perf_counter()
    again = load_generator()
    assert time.perf_counter() - started < 10  # about 1 s on an idle 2-core laptop: no second conversion
    found = again.extract("Colours: red, green.\nQuestion: Which colour comes first?\nAnswer:", ["red", "green"], 4)
    assert isinstance(found, Extraction) and found.text in {"red", "green", "unknown"}
