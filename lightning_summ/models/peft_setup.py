"""LoRA / QLoRA through peft and bitsandbytes, kept in one place."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import BitsAndBytesConfig

from lightning_summ.models.settings import LoraSettings, QuantizationSettings


def quantization_config(q: QuantizationSettings, compute_dtype: torch.dtype) -> BitsAndBytesConfig:
    """QLoRA's recipe: 4-bit NormalFloat with double quantization, matmuls in the training dtype
    (a bf16/fp32 mismatch here silently doubles memory traffic or breaks fp16 scaling)."""
    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                              bnb_4bit_use_double_quant=q.double_quant, bnb_4bit_compute_dtype=compute_dtype)


def apply_lora(model, lora: LoraSettings, quantized: bool, gradient_checkpointing: bool, new_token_ids: list[int]):
    """Wrap ``model`` with LoRA adapters (fp32); train the embedding rows of ``new_token_ids`` too.

    New tokens (``#Person1#``...) start from an untrained row: with the embeddings frozen the model
    could neither read nor write them, so peft's trainable tokens train just those rows (and the
    output head's rows when it is not tied to the embeddings).
    """
    if quantized:
        # Casts norms to fp32 and enables input grads for checkpointing through frozen 4-bit layers.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    trainable_tokens = None
    if new_token_ids:
        embed_name = _module_name(model, model.get_input_embeddings())
        trainable_tokens = {embed_name: new_token_ids}
        if not model.config.get_text_config().tie_word_embeddings:
            trainable_tokens[_module_name(model, model.get_output_embeddings())] = new_token_ids
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora.target_modules, task_type="CAUSAL_LM",
                        trainable_token_indices=trainable_tokens)
    model = get_peft_model(model, config)
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()  # fp32 adapters: safe under 16-mixed's GradScaler and bf16-mixed
    return model.train()


def _module_name(model, module) -> str:
    return next(name.split(".")[-1] for name, m in model.named_modules() if m is module)
