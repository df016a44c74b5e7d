"""``model.cudnn_attention``: the loss forwards on CUDA run without cuDNN attention unless it is asked for."""

from __future__ import annotations

from unittest.mock import patch

import pytest
import torch

from tests.models.test_causal import DIALOGUE, SUMMARY, feats, tiny


@pytest.mark.parametrize("cudnn_attention", [False, True])
def test_training_and_validation_losses_on_cuda_use_cudnn_only_when_asked(cudnn_attention):
    model = tiny("qwen3", cudnn_attention=cudnn_attention)
    batch = model.processor.collator(False)(feats(model, [(DIALOGUE, SUMMARY)], False))
    seen = []
    original = model.compute_loss
    model.compute_loss = lambda b: seen.append(torch.backends.cuda.cudnn_sdp_enabled()) or original(b)
    model.log = lambda *args, **kwargs: None  # no Trainer to log to
    trainer = type("T", (), {"optimizers": [torch.optim.SGD([torch.zeros(1)], lr=0.1)]})()
    assert torch.backends.cuda.cudnn_sdp_enabled()
    with patch.object(type(model), "_device_type", lambda self: "cuda"), \
            patch.object(type(model), "trainer", property(lambda self: trainer)):
        model.training_step(batch, 0)
        model.validation_loss(batch)
    assert seen == [cudnn_attention, cudnn_attention]
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored after each forward


def test_on_a_cpu_nothing_changes():
    model = tiny("qwen3")
    with model.attention_for_training():
        assert torch.backends.cuda.cudnn_sdp_enabled()


def test_recomputed_forwards_of_gradient_checkpointing_also_run_without_cudnn():
    """With checkpointing, backward runs each layer's forward again: it must pick the forward's kernels."""
    model = tiny("qwen3", gradient_checkpointing=True).train()
    batch = model.processor.collator(False)(feats(model, [(DIALOGUE, SUMMARY)], False))
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(torch.backends.cuda.cudnn_sdp_enabled())
        return sdpa(*args, **kwargs)
    model.log = lambda *args, **kwargs: None
    trainer = type("T", (), {"optimizers": [torch.optim.SGD([torch.zeros(1)], lr=0.1)]})()
    with patch.object(type(model), "_device_type", lambda self: "cuda"), \
            patch.object(type(model), "trainer", property(lambda self: trainer)), \
            patch("torch.nn.functional.scaled_dot_product_attention", spy):
        loss = model.training_step(batch, 0)
        forwards = len(seen)
        model.backward(loss)
    layers = model.model.get_base_model().config.num_hidden_layers
    assert forwards == layers and len(seen) == 2 * layers  # each layer's attention ran again in backward
    assert not any(seen)


@pytest.mark.parametrize("cudnn_attention", [False, True])
def test_compiled_blocks_trace_the_training_kernels_into_their_graph(cudnn_attention):
    """The restriction is entered inside each compiled block (part of what is compiled, so a cached
    graph traced under other kernels is not reused): the same loss as eager, one graph for the layers."""
    from torch._dynamo.utils import counters

    from lightning_summ.decoding.attention import sdpa_without_cudnn
    from tests.models.test_chunked_loss import _batch, _loss_and_grads, _perturbed

    eager = _perturbed("qwen3")
    batch = _batch(eager)
    eager_loss, _ = _loss_and_grads(eager.train(), batch)
    model = _perturbed("qwen3", compile="aot_eager", cudnn_attention=cudnn_attention)
    model.model = None  # built again by configure_model, now on "cuda"
    torch._dynamo.reset()
    counters.clear()
    with patch.object(type(model), "_device_type", lambda self: "cuda"):
        model.configure_model()
        model.load_state_dict(eager.state_dict())
        assert model._compiled_blocks.context is (None if cudnn_attention else sdpa_without_cudnn)
        loss, _ = _loss_and_grads(model.train(), batch)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
