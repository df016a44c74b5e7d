"""model.init_args.loss_chunk_size: the chunked head + cross-entropy equals one head call."""

from __future__ import annotations

import pytest
import torch

from lightning_summ.errors import ConfigError
from tests.models.test_causal import DIALOGUE, SUMMARY, feats, tiny

PAIRS = [(DIALOGUE, SUMMARY), ("#Person1#: 네.", "짧은 대답."),
         (DIALOGUE + "\n#Person1#: 좋아요, 가요!", "#Person1#과 #Person2#는 국수를 먹으러 갑니다.")]


def _perturbed(family, **kwargs):
    """A tiny model whose trainable weights are all non-zero (LoRA B and new tag rows start at 0,
    which would make most gradients vanish and the comparison weak)."""
    torch.manual_seed(0)
    model = tiny(family, **kwargs)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)
    return model


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model.compute_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_loss_and_grads(model, batch, reference_loss, reference_grads) -> None:
    loss, grads = _loss_and_grads(model, batch)
    torch.testing.assert_close(loss, reference_loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == reference_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def _batch(model):
    return model.processor.collator(for_generation=False)(feats(model, PAIRS, False))


@pytest.mark.parametrize("family", ["llama", "qwen3", "gpt_neox"])
@pytest.mark.parametrize("lora", [True, False])
def test_chunked_loss_and_gradients_equal_one_head_call(family, lora):
    model = _perturbed(family, **({} if lora else {"lora": None}))
    batch = _batch(model)
    reference_loss, reference_grads = _loss_and_grads(model, batch)
    assert len(reference_grads) == sum(p.requires_grad for p in model.parameters())
    for chunk in (1, 7, 10_000):
        model.loss_chunk_size = chunk
        assert_same_loss_and_grads(model, batch, reference_loss, reference_grads)


def test_untied_head_with_trainable_tag_rows_is_peft_wrapper_and_its_rows_get_gradients():
    model = _perturbed("gpt_neox")
    _, head = model._backbone_and_head()
    assert type(head).__name__ == "TrainableTokensWrapper"  # peft's wrapper of the untied embed_out
    model.loss_chunk_size = 5
    _, grads = _loss_and_grads(model, _batch(model))
    token_grads = {n: g for n, g in grads.items() if "trainable_tokens" in n}
    assert len(token_grads) == 2  # the input embedding's new rows and the untied head's
    assert all(g.abs().sum() > 0 for g in token_grads.values())


def test_head_never_sees_more_than_one_chunk_forward_or_backward():
    model = _perturbed("qwen3")
    model.loss_chunk_size = 4
    _, head = model._backbone_and_head()
    rows = []
    hook = head.register_forward_hook(lambda module, args, out: rows.append(out.shape[0]))
    batch = _batch(model)
    loss = model.compute_loss(batch)
    forward_calls = len(rows)
    loss.backward()
    hook.remove()
    targets = int((batch["labels"] != -100).sum())
    assert max(rows) <= 4 and sum(rows[:forward_calls]) == targets
    assert len(rows) == 2 * forward_calls  # backward recomputed each chunk instead of keeping its logits


def test_loss_chunk_size_must_be_positive():
    with pytest.raises(ConfigError, match="model.loss_chunk_size must be null or >= 1, got 0"):
        tiny(loss_chunk_size=0)
