"""The bundled Gemma's tokenizer, read fast: a shortcut past ``AutoTokenizer`` for the plain layout our conversion
writes (``bundled_tokenizer``), and the BPE merges of its tokenizer.json rewritten as strings (``merges_as_strings``).

Both reach into transformers' ``GemmaTokenizer`` and the tokenizers library's file format, so they live apart from
loading and decoding (``rag.generation``); tests/test_generation.py checks that the result equals AutoTokenizer's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

_PLAIN_TOKENIZER_KEYS = {
    "backend",
    "bos_token",
    "eos_token",
    "is_local",
    "local_files_only",
    "mask_token",
    "model_max_length",
    "pad_token",
    "unk_token",
    "tokenizer_class",
}


def bundled_tokenizer(folder: Path):
    """``AutoTokenizer.from_pretrained(folder)`` for the bundled Gemma's cache dir, in 1.1 s instead of 2.4-3.1 s.

    transformers 5 parses the 33 MB tokenizer.json twice in Python (for its added tokens, then for the vocabulary and
    merges) and rebuilds the BPE model from the parsed lists. Here the tokenizers library reads the file once, in
    Rust, and Python parses only the added tokens at its head; the class gets the arguments ``from_pretrained`` gives
    it. Same tokenizer (class, backend, special and added tokens, init kwargs: tests/test_generation.py checks).
    Anything but the plain layout our conversion writes goes through AutoTokenizer.
    """
    from transformers import AutoTokenizer

    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    file = folder / "tokenizer.json"
    extra_files = ("chat_template.jinja", "chat_template.json", "special_tokens_map.json", "added_tokens.json")
    added = head_added_tokens(file) if file.is_file() else None
    if (
        added is None
        or config.pop("tokenizer_class", None) != "GemmaTokenizer"
        or not set(config) <= _PLAIN_TOKENIZER_KEYS
        or not all(isinstance(value, str) for key, value in config.items() if key.endswith("_token"))
        or any((folder / name).exists() for name in (*extra_files, "additional_chat_templates"))
    ):
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    from tokenizers import AddedToken
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    decoder = {}
    for entry in added:
        entry = dict(entry)
        index = entry.pop("id")
        decoder[index] = AddedToken(**entry)
    by_text = {str(token): token for token in decoder.values()}
    for key in GemmaTokenizer.SPECIAL_TOKENS_ATTRIBUTES:
        if config.get(key) is not None:
            config[key] = by_text.get(config[key], config[key])
    config.update(tokenizer_file=str(file), name_or_path=str(folder), is_local=True, local_files_only=True)
    return GemmaTokenizer(**config, added_tokens_decoder=decoder)


MERGES_MARK = ".merges-as-strings"  # in the bundled model's cache dir: tokenizer.json holds its merges as "a b"


def merges_as_strings(folder: Path) -> None:
    """Rewrite ``folder/tokenizer.json`` with its BPE merges as "a b" strings instead of ["a", "b"] pairs.

    The tokenizers library reads both forms into the same model, and the strings 1.44x faster: the bundled Gemma's
    515k merges load in 1.16 s instead of 1.68 s (median of 5 fresh processes each, alternating, 2 cores). Only
    when no merged token contains a space, which the string form could not tell apart. Atomic; best effort."""
    file = folder / "tokenizer.json"
    try:
        spec = json.loads(file.read_text(encoding="utf-8"))
        merges = spec.get("model", {}).get("merges") or []
        if merges and all(isinstance(m, list) and len(m) == 2 and " " not in m[0] + m[1] for m in merges):
            spec["model"]["merges"] = [f"{a} {b}" for a, b in merges]
            staging = file.with_name(f".{file.name}.{os.getpid()}.tmp")
            try:
                staging.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
                os.replace(staging, file)
            finally:
                staging.unlink(missing_ok=True)
        (folder / MERGES_MARK).touch()
    except (OSError, ValueError) as err:  # a read-only or full cache: the pairs still load, only slower
        print(f"Could not rewrite {file} for faster loading: {err}", file=sys.stderr, flush=True)


def head_added_tokens(file: Path, head_bytes: int = 4 << 20) -> list | None:
    """The ``added_tokens`` list of a tokenizer.json, parsed from the file's first ``head_bytes`` (None if not there).

    The tokenizers library writes it before the normalizer and the model (1.2 MB into the bundled Gemma's file).
    """
    with open(file, "rb") as handle:
        text = handle.read(head_bytes).decode("utf-8", errors="ignore")
    key = text.find('"added_tokens":')
    try:
        tokens, _ = json.JSONDecoder().raw_decode(text, text.index("[", key))
    except ValueError:  # not found, or cut off by the head limit
        return None
    return tokens if key >= 0 and isinstance(tokens, list) else None
