"""model.merge_adapters_for_inference: LoRA merged into the base weights for predict/test/validate only."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from lightning_summ.data.datamodule import SummarizationDataModule
from lightning_summ.errors import ConfigError
from lightning_summ.models.causal import CausalLMSummarizer
from lightning_summ.models.settings import GenerationSettings, LoraSettings, QuantizationSettings
from tests.models.test_causal import TOKENIZER
from tests.models.test_chunked_loss import _perturbed


def _lora_layers(model):
    return [m for n, m in model.model.named_modules() if hasattr(m, "merged") and hasattr(m, "lora_A")]


def test_merged_logits_equal_unmerged_and_unmerge_restores_the_weights():
    model = _perturbed("qwen3")
    batch = model.processor.generation_batch(["#Person1#: 안녕하세요.\n#Person2#: 네, 안녕하세요."] * 2)
    weights = {n: p.detach().clone() for n, p in model.model.named_parameters()}
    model.eval()
    with torch.no_grad():
        unmerged = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        model.model.merge_adapter()
        assert all(layer.merged for layer in _lora_layers(model))
        merged = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        model.model.unmerge_adapter()
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    for name, param in model.model.named_parameters():
        torch.testing.assert_close(param, weights[name], rtol=0, atol=1e-6)


class _MergedDuringPredict(Callback):
    def __init__(self):
        self.seen = []

    def on_predict_batch_start(self, trainer, module, *args):
        self.seen.append(all(layer.merged for layer in _lora_layers(module)))


def _predict(model, tmp_path):
    dm = SummarizationDataModule(model.processor, predict_path="pkg://sample_data/test.csv", eval_batch_size=4)
    probe = _MergedDuringPredict()
    trainer = Trainer(limit_predict_batches=2, logger=False, enable_progress_bar=False, callbacks=[probe],
                      default_root_dir=tmp_path)
    rows = [r for batch in trainer.predict(model, datamodule=dm) for r in batch]
    return rows, probe.seen


def test_predict_merges_for_the_stage_only_and_writes_the_same_summaries(tmp_path):
    generation = GenerationSettings(num_beams=1, max_new_tokens=6)
    plain = _perturbed("llama", generation=generation)
    rows, seen = _predict(plain, tmp_path)
    assert seen == [False, False]
    merging = _perturbed("llama", generation=generation, merge_adapters_for_inference=True)
    merged_rows, seen = _predict(merging, tmp_path)
    assert seen == [True, True]
    assert not any(layer.merged for layer in _lora_layers(merging))  # undone when predict ends
    assert [r["summary"] for r in merged_rows] == [r["summary"] for r in rows]


def test_merging_into_4bit_weights_is_refused_without_a_dequantized_base():
    with pytest.raises(ConfigError, match="with model.quantization needs quantization.dequantize_for_inference"):
        CausalLMSummarizer(tokenizer=TOKENIZER, model_config={"model_type": "llama"}, lora=LoraSettings(),
                           merge_adapters_for_inference=True, quantization=QuantizationSettings())


def test_a_model_without_adapters_has_nothing_to_merge_and_predicts_unchanged(tmp_path):
    """A config that merges (the shipped Qwen3 ones) with --model.init_args.lora=null (a merged or
    full model): accepted, the predict stage runs the model as it is."""
    plain = _perturbed("llama", lora=None, generation=GenerationSettings(num_beams=1, max_new_tokens=6))
    rows, _ = _predict(plain, tmp_path)
    merging = _perturbed("llama", lora=None, merge_adapters_for_inference=True,
                         generation=GenerationSettings(num_beams=1, max_new_tokens=6))
    merged_rows, _ = _predict(merging, tmp_path)
    assert merging._inference_weights.merged == [] and [r["summary"] for r in merged_rows] == [r["summary"] for r in rows]
