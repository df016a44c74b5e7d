"""quantization.dequantize_for_inference: QLoRA decodes on dequantized copies of its 4-bit linears
during validate/test/predict only, with the 4-bit model's outputs."""

from __future__ import annotations

import contextlib

import bitsandbytes as bnb
import pytest
import torch
from lightning.pytorch import Callback, Trainer

from lightning_summ.data.datamodule import SummarizationDataModule
from lightning_summ.errors import ConfigError
from lightning_summ.models.causal import CausalLMSummarizer
from lightning_summ.models.dequantize import DequantizedBase, DequantizedLinear, four_bit_linears
from lightning_summ.models.settings import GenerationSettings, LoraSettings, QuantizationSettings
from tests.models.test_causal import TOKENIZER

# bitsandbytes' CPU inference kernel (eval mode, no grad) needs every in_features >= its block of 64
QWEN3_64 = {"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True}


def _qlora(path, dequantize: bool, compute_dtype: str = "auto", merge: bool = False) -> CausalLMSummarizer:
    torch.manual_seed(0)
    quantization = QuantizationSettings(dequantize_for_inference=dequantize, compute_dtype=compute_dtype)
    model = CausalLMSummarizer(pretrained=str(path), lora=LoraSettings(r=4, alpha=8, dropout=0.0), max_length=256,
                               quantization=quantization, merge_adapters_for_inference=merge,
                               generation=GenerationSettings(num_beams=1, max_new_tokens=6))
    model.processor.fit_tags()
    model.configure_model()
    with torch.no_grad():  # non-zero adapters, so that decoding depends on them
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(torch.randn_like(param) * 0.05)
    return model


@pytest.fixture(scope="module")
def saved_base(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "m"
    source = CausalLMSummarizer(tokenizer=TOKENIZER, model_config=QWEN3_64, lora=None, dtype="float32")
    source.processor.fit_tags()
    source.configure_model()
    source.model.save_pretrained(path)
    source.tokenizer.save_pretrained(path)
    return path


class _LayerTypes(Callback):
    def __init__(self):
        self.seen = []

    def on_predict_batch_start(self, trainer, module, *args):
        self.seen.append(sum(isinstance(m, bnb.nn.Linear4bit) for m in module.model.modules()))


def _predict(model, tmp_path):
    dm = SummarizationDataModule(model.processor, predict_path="pkg://sample_data/test.csv", eval_batch_size=4)
    probe = _LayerTypes()
    trainer = Trainer(limit_predict_batches=2, logger=False, enable_progress_bar=False, callbacks=[probe],
                      default_root_dir=tmp_path)
    return [r["summary"] for batch in trainer.predict(model, datamodule=dm) for r in batch], probe.seen


def test_predict_decodes_on_the_dequantized_base_and_writes_the_4bit_models_summaries(saved_base, tmp_path):
    four_bit, seen = _predict(_qlora(saved_base, dequantize=False), tmp_path)
    layers = seen[0]
    assert layers > 0 and seen == [layers, layers]
    model = _qlora(saved_base, dequantize=True)
    dequantized, seen = _predict(model, tmp_path)
    assert seen == [0, 0]  # no 4-bit linear while predicting
    assert len(four_bit_linears(model.model)) == layers  # put back when predict ends
    assert dequantized == four_bit


def test_dequantized_copy_computes_what_the_4bit_layer_computes(saved_base):
    model = _qlora(saved_base, dequantize=False)
    batch = model.processor.generation_batch(["#Person1#: 안녕하세요.\n#Person2#: 네, 안녕하세요."] * 2)
    # training mode: in eval mode without grad, bitsandbytes' CPU kernel repacks the 4-bit weights
    # in its own layout first (then apply() declines, tested below); the CUDA kernel does not
    model.train()
    with torch.no_grad():
        reference = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        swap = DequantizedBase()
        assert swap.apply(model.model) and not four_bit_linears(model.model)
        logits = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        swap.restore()
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)


def _lora_layers(network) -> list:
    from peft.tuners.lora import LoraLayer

    return [m for m in network.modules() if isinstance(m, LoraLayer)]


def test_adapters_merged_into_the_dequantized_copy_compute_the_unmerged_models_logits(saved_base):
    model = _qlora(saved_base, dequantize=False)
    batch = model.processor.generation_batch(["#Person1#: 안녕하세요.\n#Person2#: 네, 안녕하세요."] * 2)
    model.train()  # see test_dequantized_copy_computes_what_the_4bit_layer_computes
    layers = _lora_layers(model.model)
    with torch.no_grad():
        reference = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        swap = DequantizedBase()
        assert swap.apply(model.model, merge_adapters=True)
        assert layers and all(layer.merged for layer in layers)  # peft runs the merged copy alone
        logits = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        swap.restore()
        assert not any(layer.merged for layer in layers) and four_bit_linears(model.model)
        again = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(again, reference, rtol=0, atol=0)  # the 4-bit model with its adapters, unchanged


def test_layers_merged_before_are_left_as_they_were(saved_base):
    """Adapters someone merged into the 4-bit weights stay merged (and are not merged twice)."""
    model = _qlora(saved_base, dequantize=False)
    batch = model.processor.generation_batch(["#Person1#: 안녕하세요.\n#Person2#: 네, 안녕하세요."])
    model.train()  # see test_dequantized_copy_computes_what_the_4bit_layer_computes
    logits = lambda: model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # noqa: E731
    with torch.no_grad():
        model.model.merge_adapter()
        merged = logits()
        swap = DequantizedBase()
        assert swap.apply(model.model, merge_adapters=True)
        during = logits()
        swap.restore()
        assert all(layer.merged for layer in _lora_layers(model.model))
        after = logits()
    torch.testing.assert_close(during, merged, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after, merged, rtol=0, atol=0)


def test_a_failing_merge_puts_the_4bit_layers_back(saved_base, monkeypatch):
    from peft.tuners.lora.bnb import Linear4bit as LoraLinear4bit

    model = _qlora(saved_base, dequantize=False)
    layers = len(four_bit_linears(model.model))

    calls, original = [], LoraLinear4bit.get_delta_weight

    def out_of_memory_at_the_third(self, adapter):  # two layers merged and marked, then the failure
        calls.append(adapter)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, adapter)
    monkeypatch.setattr(LoraLinear4bit, "get_delta_weight", out_of_memory_at_the_third)
    with pytest.raises(torch.OutOfMemoryError):
        DequantizedBase().apply(model.model, merge_adapters=True)
    assert len(four_bit_linears(model.model)) == layers and not any(layer.merged for layer in _lora_layers(model.model))


def test_predict_with_merged_adapters_on_the_dequantized_base_writes_the_4bit_models_summaries(saved_base, tmp_path):
    four_bit, _ = _predict(_qlora(saved_base, dequantize=False), tmp_path)
    model = _qlora(saved_base, dequantize=True, merge=True)
    merged_during = []

    class Probe(Callback):
        def on_predict_batch_start(self, trainer, module, *args):
            merged_during.append(all(layer.merged for layer in _lora_layers(module.model)))

    dm = SummarizationDataModule(model.processor, predict_path="pkg://sample_data/test.csv", eval_batch_size=4)
    trainer = Trainer(limit_predict_batches=2, logger=False, enable_progress_bar=False, callbacks=[Probe()],
                      default_root_dir=tmp_path)
    merged = [r["summary"] for batch in trainer.predict(model, datamodule=dm) for r in batch]
    assert merged_during == [True, True]
    assert not any(layer.merged for layer in _lora_layers(model.model)) and four_bit_linears(model.model)
    assert merged == four_bit


def test_dequantize_is_a_4bit_option():
    with pytest.raises(ConfigError, match="quantization.dequantize_for_inference .* applies to 4-bit only"):
        QuantizationSettings(bits=8, dequantize_for_inference=True)


def test_weights_repacked_by_the_cpu_inference_kernel_are_left_4bit(saved_base, capsys):
    model = _qlora(saved_base, dequantize=False)
    batch = model.processor.generation_batch(["#Person1#: 네."])
    model.eval()
    with torch.no_grad():
        model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    if not any(getattr(layer.weight.quant_state, "packing_format_for_cpu", False)
               for _, _, layer in four_bit_linears(model.model)):
        pytest.skip("this CPU's bitsandbytes kernel does not repack (no AVX-512 BF16)")
    assert not DequantizedBase().apply(model.model) and four_bit_linears(model.model)
    assert "CPU inference layout" in capsys.readouterr().out


@pytest.mark.parametrize("autocast", [False, True], ids=["no-autocast", "bf16-autocast"])
def test_a_bf16_compute_dtype_works_with_and_without_autocast(saved_base, autocast):
    """The copy casts like Linear4bit: fp32 activations into a bf16 weight (precision 32-true with
    compute_dtype bfloat16) used to fail with a dtype mismatch."""
    model = _qlora(saved_base, dequantize=False, compute_dtype="bfloat16")
    batch = model.processor.generation_batch(["#Person1#: 안녕하세요.\n#Person2#: 네, 안녕하세요."] * 2)
    model.train()  # see test_dequantized_copy_computes_what_the_4bit_layer_computes
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.no_grad(), context:
        reference = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        swap = DequantizedBase()
        assert swap.apply(model.model)
        assert {layer.weight.dtype for layer in model.model.modules() if isinstance(layer, DequantizedLinear)} \
            == {torch.bfloat16}
        logits = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        swap.restore()
    assert logits.dtype == reference.dtype
    torch.testing.assert_close(logits, reference, rtol=2e-2, atol=2e-2)


def test_validation_during_fit_keeps_the_4bit_base(saved_base, tmp_path):
    model = _qlora(saved_base, dequantize=True)
    seen = []

    class Probe(Callback):
        def on_validation_batch_start(self, trainer, module, *args):
            seen.append(len(four_bit_linears(module.model)))

    dm = SummarizationDataModule(model.processor, train_path="pkg://sample_data/train.csv",
                                 val_path="pkg://sample_data/dev.csv", batch_size=4, eval_batch_size=4)
    trainer = Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path,
                      callbacks=[Probe()])
    trainer.fit(model, datamodule=dm)
    assert seen and all(n > 0 for n in seen)


def test_too_little_free_memory_keeps_the_4bit_base_and_says_so(saved_base, monkeypatch, capsys):
    from lightning_summ.models import dequantize

    monkeypatch.setattr(dequantize, "free_bytes", lambda device: 1 << 20)
    model = _qlora(saved_base, dequantize=True)
    assert not DequantizedBase().apply(model.model) and four_bit_linears(model.model)
    assert "GiB are free: decoding with the 4-bit base" in capsys.readouterr().out


def test_serve_enters_the_inference_weights(monkeypatch, tmp_path):
    """serve runs no predict hooks: it switches to the inference weights itself."""
    from conftest import QUICKSTART, TINY
    from lightning_summ.commands.serve import load_module
    from lightning_summ.models.base import SummarizerBase

    calls = []
    monkeypatch.setattr(SummarizerBase, "enter_inference_weights", lambda self: calls.append(type(self).__name__))
    monkeypatch.chdir(tmp_path)
    load_module(["--config", str(QUICKSTART), *TINY], None)
    assert calls == ["Seq2SeqSummarizer"]
