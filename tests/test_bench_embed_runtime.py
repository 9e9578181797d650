"""The pure parts of ``eval.bench_embed_runtime``: exact top-k and recall@k."""

import numpy as np

from eval.bench_embed_runtime import recall_at_k, top_k


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
