"""The embedder on OpenVINO: the pooling an exported encoder needs, when it is chosen, and that its vectors are the
torch model's."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ingest.common import ModelLoadError, UsageError
from ingest.embedding_openvino import RUNTIME_ENV, graph_embedder, pooled, wanted_runtime, why_not_openvino


def test_pooling_ignores_padding_and_normalises():
    hidden = np.array([[[3.0, 4.0], [100.0, 100.0]], [[1.0, 0.0], [0.0, 1.0]]])
    mask = np.array([[1, 0], [1, 1]])
    np.testing.assert_allclose(pooled(hidden, mask), [[0.6, 0.8], [2**-0.5, 2**-0.5]], rtol=1e-6)


def test_graph_embedder_returns_vectors_in_the_callers_order():
    class CharTokenizer:  # one token per character, padded with 0; the "model" echoes each token's code as its state
        model_input_names = ["input_ids", "attention_mask"]

        def __call__(self, texts, padding, truncation, max_length, return_tensors):
            width = max(len(t) for t in texts)
            ids = np.array([[ord(c) for c in t] + [0] * (width - len(t)) for t in texts])
            return {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)}

    def run_batch(feed):
        ids = feed["input_ids"].astype(np.float32)
        return np.stack([ids, np.ones_like(ids)], axis=-1)  # (batch, seq, 2)

    texts = ["a", "ccc", "bb", "dddd", "e"]
    expected = pooled(np.array([[[ord(t[0]), 1.0]] for t in texts]), np.ones((len(texts), 1)))
    for parallel in (1, 3):  # batches run one after another, or three at once from threads
        vectors = graph_embedder(run_batch, CharTokenizer(), max_tokens=16, batch_size=2, parallel=parallel)(texts)
        np.testing.assert_allclose(vectors, expected, rtol=1e-6)


def _pipeline(*modules):
    """A stand-in SentenceTransformer: its modules' class names and the pooling module's config."""
    return [type(name, (), {"get_config_dict": lambda self, c=config: c})() for name, config in modules]


def test_only_a_mean_pooled_encoder_on_a_cpu_runs_on_openvino():
    mean = _pipeline(("Transformer", {}), ("Pooling", {"pooling_mode": "mean"}), ("Normalize", {}))
    assert why_not_openvino(mean, "cpu") is None
    assert "cuda" in why_not_openvino(mean, "cuda")
    cls = _pipeline(("Transformer", {}), ("Pooling", {"pooling_mode": "cls"}))
    assert "['cls']" in why_not_openvino(cls, "cpu")
    old_style = _pipeline(("Transformer", {}), ("Pooling", {"pooling_mode_mean_tokens": True, "word_embedding": 384}))
    assert why_not_openvino(old_style, "cpu") is None  # sentence-transformers before 6 set one flag per mode
    extra = _pipeline(("Transformer", {}), ("Pooling", {"pooling_mode": "mean"}), ("Dense", {}))
    assert "Dense" in why_not_openvino(extra, "cpu")
    lowercasing = _pipeline(("Transformer", {}), ("Pooling", {"pooling_mode": "mean"}))
    lowercasing[0].do_lower_case = True  # sentence-transformers lowers the text itself; the exported graph would not
    assert "lowercases" in why_not_openvino(lowercasing, "cpu")


def test_the_runtime_is_the_argument_then_the_environment_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    assert wanted_runtime(None) is None
    monkeypatch.setenv(RUNTIME_ENV, "torch")
    assert wanted_runtime(None) == "torch" and wanted_runtime("openvino") == "openvino"
    monkeypatch.setenv(RUNTIME_ENV, "onnx")
    with pytest.raises(UsageError, match="DOCRAG_EMBED_RUNTIME='onnx' is not an embedding runtime"):
        wanted_runtime(None)


@pytest.mark.slow
def test_openvino_embeds_the_bundled_minilm_as_torch_does_and_exports_it_once(model_cache_dir, monkeypatch):
    from ingest.embedding import load_embedder

    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    texts = ["The nightly fee is CAD 40 per night.", "Tide gauge 7 read 49 cm.", "Who is Ana Li?", "ok"]
    reference = load_embedder(progress=False, dtype="float32", runtime="torch").embed(texts)
    exact = load_embedder(progress=False, dtype="float32", runtime="openvino")
    assert exact.runtime == "openvino"
    np.testing.assert_allclose(exact.embed(texts), reference, atol=1e-5)  # float32 on OpenVINO: the same vectors
    np.testing.assert_allclose(exact.embed(texts[::-1])[::-1], reference, atol=1e-5)  # batching does not matter
    [graph] = list((model_cache_dir / "docrag" / "embedders" / "openvino").glob("*/encoder/encoder.xml"))
    exported_at = graph.stat().st_mtime_ns
    default = load_embedder(progress=False)  # this CPU's default: OpenVINO, in bf16 where the CPU has it
    assert default.runtime == "openvino" and graph.stat().st_mtime_ns == exported_at  # read from the cache
    vectors = default.embed(texts)
    assert np.abs(vectors - reference).max() < 1e-2 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert not list(graph.parent.parent.glob("*.partial"))

    def fails(*args):
        raise RuntimeError("unsupported operation")

    monkeypatch.setattr("ingest.embedding.cached_openvino_embedder", lambda *args: None)  # as before any export
    monkeypatch.setattr("ingest.embedding.openvino_embedder", fails)
    assert load_embedder(progress=False).runtime == "torch"  # a model OpenVINO cannot convert embeds on torch
    with pytest.raises(ModelLoadError, match="on OpenVINO: RuntimeError: unsupported operation"):
        load_embedder(progress=False, runtime="openvino")
    monkeypatch.setattr("ingest.embedding.why_not_openvino", lambda model, device: "openvino is not installed")
    assert load_embedder(progress=False).runtime == "torch"  # the default falls back to torch
    with pytest.raises(ModelLoadError, match="on OpenVINO: openvino is not installed. Unset DOCRAG_EMBED_RUNTIME"):
        load_embedder(progress=False, runtime="openvino")  # asked for by name, it is an error


@pytest.mark.slow
def test_once_exported_the_embedder_loads_without_sentence_transformers(monkeypatch):
    from ingest.embedding import load_embedder

    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    texts = ["The nightly fee is USD 40 per night.", "Ana Li signed the lease on 3 March 2021.", "ok"]
    torch_model = load_embedder(progress=False, runtime="torch")
    with monkeypatch.context() as patch:  # the full load, which exports the model if this run has not yet
        patch.setattr("ingest.embedding.cached_openvino_embedder", lambda *args: None)
        full = load_embedder(progress=False)
    assert full.runtime == "openvino"
    # A fresh process, as `rag search` starts: the embedder comes from the export and the tokenizer alone.
    code = (
        "import json, sys; from ingest.embedding import load_embedder; e = load_embedder(progress=False); "
        f"texts = {texts!r}; "
        "print(json.dumps({'sentence_transformers': 'sentence_transformers' in sys.modules, 'runtime': e.runtime, "
        "'vectors': e.embed(texts).tolist(), 'lengths': [e.token_len(t) for t in texts]}))"
    )
    result = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert not result["sentence_transformers"] and result["runtime"] == "openvino"
    np.testing.assert_allclose(result["vectors"], full.embed(texts), atol=1e-6)  # the same graph, the same vectors
    assert result["lengths"] == [torch_model.token_len(t) for t in texts]  # the same tokens, so the same chunks
