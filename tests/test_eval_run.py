"""The evaluator's caches: what their keys hold."""

from eval.run import eval_index_dir
from fakes import HashEmbedder


def test_the_eval_index_cache_keys_on_the_embedders_runtime_and_precision(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    corpus = tmp_path / "docs"
    corpus.mkdir()

    def embedder(runtime: str, dtype: str) -> HashEmbedder:
        made = HashEmbedder(name="sentence-transformers/all-MiniLM-L6-v2")
        made.runtime, made.dtype = runtime, dtype
        return made

    built = {
        eval_index_dir(corpus, embedder(runtime, dtype))
        for runtime, dtype in [("openvino", "bfloat16"), ("torch", "bfloat16"), ("openvino", "float32")]
    }
    assert len(built) == 3 and all(path.parent == tmp_path / "cache" / "docrag" / "eval" / "index" for path in built)
    assert eval_index_dir(corpus, embedder("torch", "bfloat16")) in built  # the same settings find the same index
