"""Cross-entropy through an output matrix that is not trained, computed with its gradient in one chunked pass.

Gemma 3's output matrix is its 262k-entry token embedding, frozen by both fine-tunes (LoRA freezes every base weight;
full fine-tuning leaves the embedding out). The usual path materialises the logits of every labelled position in
float32, keeps them for the backward pass and runs log-softmax forward and backward over them: 1.5 GB per batch of
1,400 document tokens, and on 2 cores the elementwise passes over it cost as much as the matrix products. Because the
matrix needs no gradient, the gradient with respect to the hidden states, (softmax - one-hot) @ W / n, can be computed
in the forward pass, a few hundred positions at a time; backward then only scales it. Same loss, same gradient up to
the rounding of the bf16 products (tests/test_frozen_head.py).
"""

from __future__ import annotations

import torch

CHUNK = 256  # positions per chunk: 256 x 262k float32 logits is 270 MB


class FrozenHeadCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets``; ``weight`` gets no gradient."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype):
        n = len(targets)
        weight = weight.to(dtype)  # once per batch, as autocast would cast it for the one big product
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, CHUNK):
                chunk = hidden[start : start + CHUNK].to(dtype)
                wanted = targets[start : start + CHUNK]
                logits = (chunk @ weight.T).float()
                normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)
                loss += (normaliser.squeeze(1) - logits.gather(1, wanted[:, None]).squeeze(1)).sum()
                probabilities = logits.sub_(normaliser).exp_()  # softmax, in place of the logits
                probabilities[torch.arange(len(wanted), device=wanted.device), wanted] -= 1
                grad[start : start + CHUNK] = (probabilities.to(dtype) @ weight).to(grad.dtype) / n
        ctx.save_for_backward(grad)
        return loss / n

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_output.to(grad.dtype), None, None, None


def frozen_head_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss, with products in autocast's precision when autocast is on (as the plain path computes them)."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    return FrozenHeadCrossEntropy.apply(hidden, weight, targets, dtype)
