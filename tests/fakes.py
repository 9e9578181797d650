"""Fast stand-ins for the real models, for unit tests only."""

from __future__ import annotations

import hashlib
import re

import numpy as np

_WORD = re.compile(r"\w+")


class HashEmbedder:
    """Bag-of-words hashed into a fixed number of dimensions, L2-normalised.

    Texts that share words get a positive cosine, so retrieval tests can assert real rankings.
    """

    def __init__(self, dimension: int = 64, name: str = "hash-embedder") -> None:
        self.dimension = dimension
        self.name = name
        self.calls = 0  # number of texts embedded, so tests can assert "embedded nothing"
        self.max_tokens = 256

    def token_len(self, text: str) -> int:
        return len(_WORD.findall(text))

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                out[row, bucket % self.dimension] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


class QuoteGenerator:
    """Answers by quoting the first words of passage [1] of the prompt, with its citation mark, word by word.

    A question containing "unknowable" gets "unknown", so tests can see an abstention. Only the last "Passages:"
    block counts (the few-shot examples come first).
    """

    name = "quote-generator"
    context_window = 2048
    has_chat_template = False

    def __init__(self, words: int = 8) -> None:
        self.words = words
        self.prompts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, prompt: str, max_new_tokens: int = 48, stop=("\n",)):
        self.prompts.append(prompt)
        block = prompt.rsplit("Passages:", 1)[-1]
        first = next((line for line in block.splitlines() if line.startswith("[1] ")), "")
        text = first.split(") ", 1)[-1] if first else ""
        if "unknowable" in prompt.rsplit("Question:", 1)[-1] or not text:
            yield "unknown"
            return
        words = text.split()[: self.words]
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
        yield " [1]"

    def generate(self, prompts, max_new_tokens: int = 48, stop=("\n",)):
        return ["".join(self.stream(p, max_new_tokens, stop)) for p in prompts]
