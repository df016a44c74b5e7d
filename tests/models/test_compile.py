"""model.init_args.compile: compiled transformer blocks give the eager loss and gradients, and
run only in training mode (evaluation and generation stay eager)."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from lightning_summ.errors import ConfigError
from lightning_summ.models.compilation import repeated_blocks
from tests.models.test_chunked_loss import _batch, _loss_and_grads, _perturbed
from tests.models.test_seq2seq import TINY_BART, tiny_model, training_batch

# aot_eager traces the blocks with dynamo and AOTAutograd as inductor does (graph capture,
# functionalised forward and backward) without generating C++ kernels, which would take a minute on
# the CPU. Inductor's own kernels are not compared here (on the GPU they trained; no loss comparison).
BACKEND = "aot_eager"
NO_DROPOUT = dict(TINY_BART, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def _seq2seq(compile: bool):
    torch.manual_seed(0)
    model = tiny_model(model_config=NO_DROPOUT, compile=compile and BACKEND)
    return model, training_batch(model)


def _causal(compile: bool, gradient_checkpointing: bool = False):
    # LoRA (dropout 0) on a tiny Qwen3
    model = _perturbed("qwen3", compile=compile and BACKEND, gradient_checkpointing=gradient_checkpointing)
    return model, _batch(model)


def _causal_checkpointed(compile: bool):
    return _causal(compile, gradient_checkpointing=True)  # the blocks compiled inside the recomputation


@pytest.mark.parametrize("build", [_seq2seq, _causal, _causal_checkpointed],
                         ids=["bart", "qwen3-lora", "qwen3-lora-checkpointing"])
def test_compiled_blocks_give_the_eager_loss_and_gradients(build):
    torch._dynamo.reset()
    counters.clear()
    eager, batch = build(compile=False)
    eager_loss, eager_grads = _loss_and_grads(eager.train(), batch)
    compiled, _ = build(compile=True)
    assert len(compiled._compiled_blocks) == len(repeated_blocks(compiled.model)) >= 2
    assert counters["frames"]["ok"] == 0  # compiling is lazy: nothing traced before a step
    loss, grads = _loss_and_grads(compiled.train(), batch)
    assert counters["frames"]["ok"] >= 1  # the blocks really ran compiled
    # one graph per block class, reused by every layer: nothing per layer (e.g. a key/value cache
    # filled in training, updated under each layer's index) makes dynamo recompile layer by layer
    classes = {type(block) for block in compiled._compiled_blocks.blocks}
    assert counters["stats"]["unique_graphs"] == len(classes)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
    assert grads.keys() == eager_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_evaluation_and_generation_run_the_eager_blocks_training_the_compiled_ones():
    torch._dynamo.reset()
    counters.clear()
    model, batch = _seq2seq(compile=True)
    model.eval()
    with torch.no_grad():
        model.compute_loss(batch)
        model.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=3)
    assert counters["frames"]["ok"] == 0
    model.train()
    model.compute_loss(batch)
    assert counters["frames"]["ok"] >= 1


def test_a_model_without_declared_blocks_or_an_unknown_backend_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="model.compile: Sequential declares no repeated blocks"):
        repeated_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(ConfigError, match="model.compile must be true, false, auto or a torch.compile backend .*got 'fast'"):
        tiny_model(compile="fast")


def test_fit_with_compile_trains_compiled_blocks_through_the_cli(cli_run):
    torch._dynamo.reset()
    counters.clear()
    cli = cli_run("fit", f"--model.init_args.compile={BACKEND}", "--trainer.max_epochs=1",
                  "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1")
    assert cli.model._compiled_blocks is not None and counters["frames"]["ok"] >= 1
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert "val/loss" in cli.trainer.callback_metrics


def test_compile_auto_is_inductor_on_cuda_and_eager_elsewhere(monkeypatch):
    from lightning_summ.models.base import SummarizerBase
    from lightning_summ.models.compilation import resolve_auto

    assert resolve_auto("auto", "cuda") == "inductor"
    assert resolve_auto("auto", "cpu") is None and resolve_auto("auto", None) is None  # None: no Trainer
    assert resolve_auto("aot_eager", "cpu") == "aot_eager" and resolve_auto(None, "cuda") is None
    assert tiny_model(compile="auto")._compiled_blocks is None  # built outside a Trainer
    monkeypatch.setattr(SummarizerBase, "_device_type", lambda self: "cuda")
    blocks = tiny_model(compile="auto")._compiled_blocks  # compiling is lazy: nothing runs here
    assert blocks is not None and len(blocks) == 2


def test_fit_with_compile_auto_on_a_cpu_trains_the_eager_blocks(cli_run, monkeypatch):
    from lightning_summ.models import base, compilation

    seen = []
    monkeypatch.setattr(base, "resolve_auto", lambda backend, device: seen.append(device) or
                        compilation.resolve_auto(backend, device))
    torch._dynamo.reset()
    counters.clear()
    cli = cli_run("fit", "--model.init_args.compile=auto", "--trainer.max_epochs=1",
                  "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=0")
    assert seen == ["cpu"]  # the Trainer's device reached the choice (on a GPU: "cuda", inductor)
    assert cli.model._compiled_blocks is None and counters["frames"]["ok"] == 0


def _seq2seq_step(compile: bool):
    torch.manual_seed(0)
    model = tiny_model(model_config=NO_DROPOUT, compile=compile and BACKEND, compile_scope="step")
    _, batch = _seq2seq(compile=False)
    return model, batch


def test_a_compiled_step_gives_the_eager_loss_and_gradients_in_one_graph():
    torch._dynamo.reset()
    counters.clear()
    eager, batch = _seq2seq(compile=False)
    eager_loss, eager_grads = _loss_and_grads(eager.train(), batch)
    compiled, _ = _seq2seq_step(compile=True)
    assert compiled._compiled_blocks is None and compiled._compiled_step is not None
    compiled.train().zero_grad(set_to_none=True)
    loss = compiled._compiled_step(batch)  # what training_step calls: the batch's lists (fname...) are left out
    loss.backward()
    # the whole loss (embeddings, masks, blocks, head, cross-entropy) in one graph: no graph break
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    torch.testing.assert_close(loss.detach(), eager_loss, rtol=1e-5, atol=1e-5)
    grads = {n: p.grad for n, p in compiled.named_parameters() if p.grad is not None}
    assert grads.keys() == eager_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_fit_with_a_compiled_step_through_the_cli(cli_run):
    torch._dynamo.reset()
    counters.clear()
    cli = cli_run("fit", f"--model.init_args.compile={BACKEND}", "--model.init_args.compile_scope=step",
                  "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1")
    assert cli.model._compiled_step is not None and counters["frames"]["ok"] >= 1
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert "val/loss" in cli.trainer.callback_metrics


@pytest.mark.parametrize("settings, message", [
    (dict(compile=BACKEND, compile_scope="model"), "model.compile_scope must be one of blocks, step, got 'model'"),
    (dict(compile=True, compile_mode="fastest"), "model.compile_mode must be null or one of default, reduce-overhead"),
    (dict(compile=BACKEND, compile_mode="reduce-overhead"),
     "model.compile_mode 'reduce-overhead' is an inductor mode: set model.compile to true or auto \\(it is 'aot_eager'\\)"),
    (dict(compile_mode="reduce-overhead"), "inductor mode: set model.compile to true or auto \\(it is False\\)"),
])
def test_bad_compile_scope_or_mode_is_refused_in_one_line(settings, message):
    with pytest.raises(ConfigError, match=message):
        tiny_model(**settings)


def test_cuda_graphs_with_gradient_accumulation_are_refused_before_training(cli_run, capsys):
    from lightning_summ.models.compilation import uses_cuda_graphs

    assert uses_cuda_graphs("inductor", "reduce-overhead") and uses_cuda_graphs("cudagraphs", None)
    assert not uses_cuda_graphs("inductor", None) and not uses_cuda_graphs("inductor", "max-autotune-no-cudagraphs")
    with pytest.raises(ConfigError, match="cannot accumulate gradients \\(trainer.accumulate_grad_batches=2\\)"):
        # dynamo's cudagraphs backend: refused at fit start, before any step (on a CPU nothing would be graphed)
        cli_run("fit", "--model.init_args.compile=cudagraphs", "--trainer.accumulate_grad_batches=2",
                "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=0")


def test_cuda_graphs_refuse_an_accumulation_scheduled_for_a_later_epoch(cli_run):
    # GradientAccumulationScheduler raises trainer.accumulate_grad_batches at an epoch's start, after fit start
    schedule = '{"class_path": "lightning.pytorch.callbacks.GradientAccumulationScheduler", "init_args": {"scheduling": {1: 2}}}'
    with pytest.raises(ConfigError, match="cannot accumulate gradients \\(trainer.accumulate_grad_batches=2\\)"):
        cli_run("fit", "--model.init_args.compile=cudagraphs", f"--trainer.callbacks+={schedule}",
                "--trainer.max_epochs=2", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=0")


def test_cuda_graphs_with_gradient_checkpointing_are_refused():
    from types import SimpleNamespace

    from tests.models.test_chunked_loss import _perturbed

    model = _perturbed("qwen3", gradient_checkpointing=True)
    model._cuda_graphs, model.compile_backend = True, "cudagraphs"
    model._trainer = SimpleNamespace(accumulate_grad_batches=1)  # what _check_cuda_graphs reads of the Trainer
    with pytest.raises(ConfigError, match="with model.gradient_checkpointing is not supported yet"):
        model._check_cuda_graphs()


def test_each_block_class_has_its_own_code_object_shared_by_its_layers():
    # dynamo keeps compiled graphs and its recompile limit (8) per code object: with one code object
    # for a BART encoder and decoder layer, each class x each new batch size used it up on the H200
    # within 5 steps and the blocks ran eager from then on (bench/NOTES.md)
    torch.manual_seed(0)
    model = tiny_model(model_config=dict(NO_DROPOUT, encoder_layers=2, decoder_layers=2), compile=BACKEND)
    codes = {}
    for block in model._compiled_blocks.blocks:
        call = block._compiled_call_impl  # _training_only's closure over the torch.compile wrapper
        compiled = dict(zip(call.__code__.co_freevars, call.__closure__))["compiled"].cell_contents
        original = compiled._torchdynamo_orig_callable
        codes.setdefault(type(block).__name__, []).append(original.__code__)
    assert {name: len(c) for name, c in codes.items()} == {"BartEncoderLayer": 2, "BartDecoderLayer": 2}
    # by identity: code objects compare by value, and dynamo's cache belongs to the object
    assert all(len({id(code) for code in c}) == 1 for c in codes.values())  # every layer of a class: one
    assert codes["BartDecoderLayer"][0] is not codes["BartEncoderLayer"][0]
