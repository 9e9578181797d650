"""The chunked cross-entropy through a frozen output matrix gives the plain path's loss and gradients."""

import pytest
import torch

from eval import frozen_head
from eval.frozen_head import frozen_head_cross_entropy
from eval.lora import selective_loss


def _plain(hidden, weight, targets):
    return torch.nn.functional.cross_entropy((hidden @ weight.T).float(), targets)


def test_loss_and_gradient_match_the_plain_path_across_chunks(monkeypatch):
    monkeypatch.setattr(frozen_head, "CHUNK", 7)  # 30 positions: five chunks, the last one short
    torch.manual_seed(0)
    weight = torch.randn(50, 16)
    targets = torch.randint(0, 50, (30,))
    hidden = torch.randn(30, 16, requires_grad=True)
    reference = hidden.detach().clone().requires_grad_()

    loss = frozen_head_cross_entropy(hidden, weight, targets)
    (3 * loss).backward()  # an outer factor reaches the gradient
    expected = _plain(reference, weight, targets)
    (3 * expected).backward()

    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(hidden.grad, reference.grad, atol=1e-6)


def test_under_bf16_autocast_it_agrees_with_the_plain_path_to_bf16_rounding():
    torch.manual_seed(1)
    weight = torch.randn(300, 32)
    targets = torch.randint(0, 300, (40,))
    hidden = torch.randn(40, 32, requires_grad=True)
    reference = hidden.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = frozen_head_cross_entropy(hidden, weight, targets)
        expected = torch.nn.functional.cross_entropy(torch.nn.functional.linear(reference, weight).float(), targets)
    loss.backward()
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-3)
    assert torch.allclose(hidden.grad, reference.grad, rtol=0.05, atol=1e-3)


def test_a_model_s_trainable_weights_get_the_same_gradient_either_way():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(2)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()  # no dropout: both passes see the same network
    model.get_output_embeddings().weight.requires_grad = False  # tied: the embedding is frozen too, as in full_ft
    ids = torch.randint(0, 64, (2, 10))
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, :4] = -100  # the prompt carries no loss

    selective_loss(model, ids, mask, labels).backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    model.get_output_embeddings().weight.requires_grad = True  # now the plain path, which also trains the matrix
    selective_loss(model, ids, mask, labels).backward()
    for name, grad in fused.items():
        assert torch.allclose(grad, dict(model.named_parameters())[name].grad, atol=1e-6), name
