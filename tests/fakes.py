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
