"""Fast stand-ins for the real models, and helpers that several test modules share. For tests only."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
from pathlib import Path

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
        self.runtime, self.dtype = "hash", "float32"

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


def embedder_factory(embedder: HashEmbedder):
    """A stand-in for ``load_embedder(name, progress)``: ``embedder`` for the default name or its own, and a new
    HashEmbedder of that name for any other (so a mismatch with the index's embedder can be provoked)."""

    def load(name=None, progress=None):
        return embedder if name in (None, embedder.name) else HashEmbedder(name=name)

    return load


class RecordingExtractor:
    """A generator for the extractive reader: picks the first allowed span containing ``reply`` (else "unknown"),
    and records the token limit of every call."""

    name = "recording-extractor"
    context_window = 2048
    has_chat_template = False

    def __init__(self, reply: str = "unknown") -> None:
        self.reply = reply
        self.limits: list[int] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def extract(self, prompt, spans, max_new_tokens=16, abstain="unknown", prefix=""):
        from rag.generation import Extraction

        self.limits.append(max_new_tokens)
        text = next((span for span in spans if self.reply in span), abstain)
        return Extraction(text, -0.1, -0.1, -6.0)


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

    def stream(self, prompt: str, max_new_tokens: int = 48, stop=("\n",), prefix: str = ""):
        prompt = prefix + prompt
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

    def generate(self, prompts, max_new_tokens: int = 48, stop=("\n",), prefix: str = ""):
        return ["".join(self.stream(p, max_new_tokens, stop, prefix)) for p in prompts]


def write(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` to ``folder/name``, making the folders it needs."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bump(path: Path, text: str) -> None:
    """Rewrite ``path`` with ``text`` and a modification time a second later, so that an edit made within the same
    second as the last index run is seen as one."""
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def make_format_1(index_dir: Path) -> None:
    """Turn the live generation into what docrag with FORMAT_VERSION 1 wrote: no keyword table."""
    from ingest.store import CATALOG_FILE, current_generation

    db = sqlite3.connect(index_dir / current_generation(index_dir) / CATALOG_FILE)
    with db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE name GLOB 'fts_class_*'").fetchall():
            db.execute(f"DROP TABLE IF EXISTS {table}")
        db.execute("DROP TABLE classes")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    db.close()


def run_checked(*args, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command outside this process, without PYTHONPATH (so nothing reaches the checkout by accident); fail
    with its output when it fails."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc
