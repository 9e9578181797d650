"""The pure parts of ``eval.bench_embed_runtime``: exact top-k, recall@k and the pooling an exported graph needs."""

import numpy as np

from eval.bench_embed_runtime import _pooled, graph_embedder, recall_at_k, top_k


def test_top_k_is_exact_inner_product_best_first():
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert top_k(queries, docs, 2).tolist() == [[0, 2], [1, 2]]
    assert top_k(queries, docs, 10).shape == (2, 4)  # k is capped at the number of docs


def test_recall_at_k_counts_the_overlap_whatever_the_order():
    reference = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    same_set_other_order = np.array([[3, 2, 1, 0], [7, 6, 5, 4]])
    assert recall_at_k(reference, same_set_other_order) == 1.0
    candidate = np.array([[0, 1, 9, 8], [4, 9, 9, 9]])  # 2 of 4, then 1 of 4
    assert recall_at_k(reference, candidate) == (0.5 + 0.25) / 2


def test_pooling_ignores_padding_and_normalises():
    hidden = np.array([[[3.0, 4.0], [100.0, 100.0]], [[1.0, 0.0], [0.0, 1.0]]])
    mask = np.array([[1, 0], [1, 1]])
    pooled = _pooled(hidden, mask)
    np.testing.assert_allclose(pooled, [[0.6, 0.8], [2**-0.5, 2**-0.5]], rtol=1e-6)


def test_graph_embedder_returns_vectors_in_the_callers_order():
    class CharTokenizer:  # one token per character, padded with 0; the "model" echoes each token's code as its state
        def __call__(self, texts, padding, truncation, max_length, return_tensors):
            width = max(len(t) for t in texts)
            ids = np.array([[ord(c) for c in t] + [0] * (width - len(t)) for t in texts])
            mask = (ids > 0).astype(np.int64)
            return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    def run_batch(feed):
        ids = feed["input_ids"].astype(np.float32)
        return np.stack([ids, np.ones_like(ids)], axis=-1)  # (batch, seq, 2)

    texts = ["a", "ccc", "bb", "dddd", "e"]
    vectors = graph_embedder(run_batch, CharTokenizer(), max_tokens=16, batch_size=2)(texts)
    expected = _pooled(np.array([[[ord(t[0]), 1.0]] for t in texts]), np.ones((len(texts), 1)))
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
