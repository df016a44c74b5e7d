"""Decoder-only summarization (Qwen3, Llama, SOLAR, Polyglot/KULLM) with LoRA or QLoRA.

What this module gets right that the seed project did not:

* the loss covers only the summary and its EOS (labels -100 on the prompt and padding);
* the pad token is never EOS (else masking pads would mask EOS and the model would never stop);
* the dialogue, not the instruction nor the summary, is cut to fit ``max_length``;
* generation runs on left-padded, prompt-only inputs and decodes only the new tokens;
* no ``token_type_ids`` reach the model; the gold summary never enters a generation input;
* QLoRA: 4-bit nf4 + double quantization via ``BitsAndBytesConfig``, compute dtype = the training
  precision's dtype, ``prepare_model_for_kbit_training``, LoRA weights in fp32;
* checkpoints hold only the trainable weights (MBs, not GBs).

Training batches are left-padded too: every summary then ends at the last position, so the
output head runs only on the last ``summary length + 1`` positions (``logits_to_keep``) instead of
the whole sequence; with 150k-token vocabularies that head is a large share of the memory.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoModelForCausalLM

from lightning_summ.data.collate import position_ids_for, summary_start
from lightning_summ.data.prompts import DEFAULT_INSTRUCTION, DEFAULT_TEMPLATE
from lightning_summ.errors import ConfigError
from lightning_summ.models.base import SummarizerBase
from lightning_summ.models.chunked_loss import chunked_head_cross_entropy
from lightning_summ.models.inference_weights import InferenceWeights
from lightning_summ.models.loading import build_config, load_model, torch_dtype
from lightning_summ.models.peft_setup import apply_lora, quantization_config
from lightning_summ.models.settings import (EvaluationSettings, GenerationSettings, LoraSettings, OptimizerSettings,
                                            QuantizationSettings)
from lightning_summ.processing import CausalProcessor


class CausalLMSummarizer(SummarizerBase):
    """Fine-tune a decoder-only LLM to summarize, with LoRA (optionally on a 4-bit base: QLoRA).

    Args:
        pretrained: hub id or local directory (e.g. ``Qwen/Qwen3-4B-Instruct-2507``).
        model_config: config overrides; without ``pretrained``, a full config for random init
            (``{model_type: qwen3, hidden_size: 64, ...}``).
        tokenizer: hub id, local directory or ``pkg://`` path; defaults to ``pretrained``.
        max_length: prompt + summary tokens; the dialogue is truncated to fit.
        instruction: task text placed before the dialogue.
        prompt_template: plain prompt with ``{instruction}`` and ``{dialogue}`` (used without a chat template).
        use_chat_template: ``null`` = the tokenizer's chat template when it has one.
        system_prompt: system message for chat templates.
        chat_template_kwargs: extra chat-template variables (``{enable_thinking: false}`` for Qwen3).
        lora: LoRA settings; ``null`` trains all weights (small models only).
        quantization: bitsandbytes settings for QLoRA; ``null`` keeps the base in ``dtype``.
        dtype: dtype of the frozen base weights (``bfloat16``); trainable weights are always fp32.
        gradient_checkpointing: recompute activations in backward (less memory, ~30% slower).
        loss_chunk_size: run the output head and the fp32 cross-entropy on this many summary
            positions at a time, each chunk recomputed in backward, so [positions x vocabulary]
            logits never exist at once (for 150k-token vocabularies); same loss and gradients.
            ``null`` = one head call over the summary positions. Not for models whose forward
            changes the head's logits (``final_logit_softcapping``, ``logit_scale``).
        merge_adapters_for_inference: for validate/test/predict outside ``fit``, merge the LoRA weights
            into the base weights (peft ``merge_adapter``) for the stage, so decoding runs one matmul
            per layer instead of base + adapter; undone when the stage ends. Same outputs up to fp
            rounding. Without ``lora`` (a merged or full model) there is nothing to merge. With
            ``quantization`` only together with ``quantization.dequantize_for_inference`` (the
            adapters are merged into the dequantized bf16 copy; merging into 4-bit weights would round
            them). Never during ``fit`` (merging and unmerging at every validation would drift the
            base weights).
        atomic_tags: add ``#Person1#``-style tags as single tokens; their new embedding rows are
            trained (peft trainable tokens) while the rest of the vocabulary stays frozen.
        device_map: for inference on models bigger than the GPU (``auto``); ``null`` lets Lightning place it.
        max_memory: per-device memory caps with ``device_map``, e.g. ``{0: 20GiB, cpu: 64GiB}``.
        offload_folder: where ``device_map`` offloads weights; default ``<log dir>/offload``.
        generation: decoding options.
        optimizer: AdamW and schedule.
        evaluation: validation generation and ROUGE.
        trust_remote_code: allow code from the model repository to run.
        ensemble_checkpoints: other checkpoints of this config (e.g. fold adapters) to decode with by
            soft voting (validate/test/predict; each member loads its own copy of the base model).
        compile: torch.compile for training steps: ``true`` (inductor), ``auto`` (inductor on
            CUDA, eager on a CPU), ``false`` or a backend's name; how it works and when it pays:
            ``lightning_summ.models.compilation``.
        compile_scope: what ``compile`` compiles: ``blocks`` (each transformer block) or ``step``
            (a training step's whole loss computation; the summary span's search breaks it in two).
        compile_mode: torch.compile's mode for inductor: null (its default), ``reduce-overhead`` or
            ``max-autotune`` (both replay CUDA graphs: no gradient accumulation, no checkpointing), or
            ``max-autotune-no-cudagraphs``.
        cudnn_attention: allow cuDNN attention in training on CUDA (off: flash / memory-efficient
            kernels; why: ``SummarizerBase.attention_for_training``).
    """

    def __init__(
        self,
        pretrained: Optional[str] = None,
        model_config: Optional[dict[str, Any]] = None,
        tokenizer: Optional[str] = None,
        max_length: int = 1024,
        instruction: str = DEFAULT_INSTRUCTION,
        prompt_template: str = DEFAULT_TEMPLATE,
        use_chat_template: Optional[bool] = None,
        system_prompt: Optional[str] = None,
        chat_template_kwargs: Optional[dict[str, Any]] = None,
        lora: Optional[LoraSettings] = LoraSettings(),
        quantization: Optional[QuantizationSettings] = None,
        dtype: str = "bfloat16",
        gradient_checkpointing: bool = False,
        loss_chunk_size: Optional[int] = None,
        merge_adapters_for_inference: bool = False,
        atomic_tags: bool = True,
        device_map: Optional[Union[str, dict[str, Any]]] = None,
        max_memory: Optional[dict[Union[int, str], str]] = None,
        offload_folder: Optional[str] = None,
        generation: Optional[GenerationSettings] = None,
        optimizer: Optional[OptimizerSettings] = None,
        evaluation: Optional[EvaluationSettings] = None,
        trust_remote_code: bool = False,
        ensemble_checkpoints: Optional[list[str]] = None,
        compile: Union[bool, str] = False,
        compile_scope: str = "blocks",
        compile_mode: Optional[str] = None,
        cudnn_attention: bool = False,
    ):
        if not (pretrained or tokenizer):
            raise ConfigError("set model.pretrained or model.tokenizer")
        if quantization is not None and lora is None:
            raise ConfigError("a quantized base cannot be trained directly: set model.lora (QLoRA)")
        if merge_adapters_for_inference and quantization is not None and not quantization.dequantize_for_inference:
            raise ConfigError("model.merge_adapters_for_inference with model.quantization needs "
                              "quantization.dequantize_for_inference: true (the adapters are merged into the "
                              "dequantized copy; merging into 4-bit weights would round them)")
        if loss_chunk_size is not None and loss_chunk_size < 1:
            raise ConfigError(f"model.loss_chunk_size must be null or >= 1, got {loss_chunk_size}")
        generation = generation or GenerationSettings()
        processor = CausalProcessor(tokenizer or pretrained, max_length, generation.max_new_tokens, instruction,
                                    prompt_template, use_chat_template, system_prompt, chat_template_kwargs,
                                    atomic_tags, trust_remote_code)
        super().__init__(processor, generation, optimizer, evaluation, trust_remote_code, ensemble_checkpoints,
                         compile=compile, compile_scope=compile_scope, compile_mode=compile_mode,
                         cudnn_attention=cudnn_attention)
        self.pretrained, self.model_config, self.weights_dtype = pretrained, model_config, dtype
        self.lora, self.quantization = lora, quantization
        self.gradient_checkpointing, self.atomic_tags = gradient_checkpointing, atomic_tags
        self.loss_chunk_size = loss_chunk_size
        self._inference_weights = InferenceWeights(merge_adapters_for_inference, quantization)
        self.device_map, self.max_memory, self.offload_folder = device_map, max_memory, offload_folder
        self.strict_loading = False  # checkpoints hold only the trainable (adapter) weights
        self.save_hyperparameters()
        self._plain_hparams()

    # -- model --------------------------------------------------------------------------------
    def _compute_dtype(self) -> torch.dtype:
        q = self.quantization
        if q is not None and q.compute_dtype != "auto":
            return torch_dtype(q.compute_dtype)
        precision = self.placement()[1]
        return torch.bfloat16 if precision.startswith("bf16") else torch.float16 if precision.startswith("16") \
            else torch.float32

    def _load_kwargs(self) -> dict:
        kwargs: dict[str, Any] = {}
        if self.quantization is not None:
            if not self.pretrained:
                raise ConfigError("quantization loads pretrained weights: set model.pretrained (a hub id or a "
                                  "local directory; save a random-init model with save_pretrained to test)")
            kwargs["quantization_config"] = quantization_config(self.quantization, self._compute_dtype())
            # bitsandbytes quantizes while loading onto the device it is given.
            kwargs["device_map"] = {"": self.placement()[0]}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
            kwargs["max_memory"] = self.max_memory
            log_dir = self.trainer.log_dir if self._trainer is not None else None
            kwargs["offload_folder"] = self.offload_folder or f"{log_dir or '.'}/offload"
        return kwargs

    def build_model(self) -> torch.nn.Module:
        config = build_config(self.pretrained, self.model_config, self.tokenizer, self.trust_remote_code)
        model = load_model(AutoModelForCausalLM, self.pretrained, config, self.weights_dtype,
                           self.trust_remote_code, **self._load_kwargs())
        if len(self.tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(self.tokenizer))
        if self.lora is None:
            if self.gradient_checkpointing:  # apply_lora enables it for LoRA; a full fine-tune asked for it too
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            return model.float().train()  # full fine-tuning needs fp32 master weights
        new_ids = self.processor.new_token_ids() if self.atomic_tags else []
        return apply_lora(model, self.lora, quantized=self.quantization is not None,
                          gradient_checkpointing=self.gradient_checkpointing, new_token_ids=new_ids)

    # -- steps ----------------------------------------------------------------------------------
    def compute_loss(self, batch: dict) -> torch.Tensor:
        if "position_ids" in batch:  # packed rows (data.packing): no mask, position ids restart per example
            backbone, head = self._backbone_and_head()
            # use_cache=False matters: with a cache transformers skips the packed-sequence mask
            hidden = backbone(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                              use_cache=False).last_hidden_state
            return chunked_head_cross_entropy(hidden[:, :-1], head, batch["labels"][:, 1:], self.loss_chunk_size)
        prefix = "" if "labels" in batch else "loss_"
        input_ids, mask, labels = (batch[f"{prefix}{k}"] for k in ("input_ids", "attention_mask", "labels"))
        # Left padding puts every summary at the end: the head only needs the last positions.
        # The collator's host-side start: read from the GPU labels it would wait for the GPU each step.
        span = batch.get(f"{prefix}summary_start")
        span = summary_start(labels) if span is None else span  # a batch made by hand
        keep = min(labels.shape[1] - span + 1, labels.shape[1])
        targets = labels[:, labels.shape[1] - keep + 1:]
        inputs = {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids_for(mask)}
        if self.loss_chunk_size is None:
            # use_cache=False: else the forward fills a key/value cache nobody reads (memory), and each
            # layer's cache update makes model.compile recompile per layer (measured on the H200)
            logits = self.model(**inputs, logits_to_keep=keep, use_cache=False).logits
            return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        backbone, head = self._backbone_and_head()
        hidden = backbone(**inputs, use_cache=False).last_hidden_state
        return chunked_head_cross_entropy(hidden[:, hidden.shape[1] - keep:-1], head, targets, self.loss_chunk_size)

    def _backbone_and_head(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The decoder stack (LoRA layers inside) and the output head (peft's trainable-tokens
        wrapper when the new tag rows of an untied head are trained): ``forward`` = head(backbone)."""
        lm = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
        config = lm.config.get_text_config()
        for name in ("final_logit_softcapping", "logit_scale"):
            if getattr(config, name, None) is not None:
                raise ConfigError(f"model.loss_chunk_size: {config.model_type} applies {name} after its head, "
                                  "which the chunked loss does not; set model.loss_chunk_size to null")
        return lm.base_model, lm.get_output_embeddings()

    # -- inference weights: merged adapters, dequantized base (validate/test/predict outside fit) --
    def enter_inference_weights(self) -> None:
        """Merge the adapters / dequantize the 4-bit base of the model and of every soft-voting
        member, as the settings ask (``models.inference_weights``)."""
        self._inference_weights.enter([self.model, *self.members])

    def leave_inference_weights(self) -> None:
        self._inference_weights.leave()

    def _enter_inference_weights(self) -> None:
        if self.trainer.state.fn != "fit":  # never during fit: merging would drift, the copy costs memory
            self.enter_inference_weights()

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.leave_inference_weights()  # a stage that failed before its end hook left them in place

    def on_validation_start(self) -> None:
        super().on_validation_start()
        self._enter_inference_weights()

    def on_validation_end(self) -> None:
        super().on_validation_end()
        self.leave_inference_weights()

    def on_test_start(self) -> None:
        self._enter_inference_weights()

    def on_test_end(self) -> None:
        self.leave_inference_weights()

    def on_predict_start(self) -> None:
        self._enter_inference_weights()

    def on_predict_end(self) -> None:
        self.leave_inference_weights()

    def eos_token_ids(self) -> list[int]:
        configured = self.model.generation_config.eos_token_id
        configured = configured if isinstance(configured, list) else [configured] if configured is not None else []
        return sorted({*configured, self.tokenizer.eos_token_id})

    def extra_generate_kwargs(self) -> dict:
        return {"pad_token_id": self.tokenizer.pad_token_id, "eos_token_id": self.eos_token_ids()}

    def generated_tokens(self, out, batch: dict) -> torch.Tensor:
        return out.sequences[:, batch["input_ids"].shape[1]:]  # decode only what was generated

    def _apply(self, fn, recurse=True):
        # With device_map, accelerate has placed the weights (several GPUs, CPU, disk) and moves
        # activations between them; Lightning's blanket .to(device)/.cpu() would undo that (or fail
        # on offloaded weights), so only this module's other children (metrics) are moved.
        if self.device_map is not None and getattr(self.model, "hf_device_map", None) is not None:
            for child in self.children():
                if child is not self.model:
                    child._apply(fn)
            return self
        return super()._apply(fn, recurse)

    # -- checkpoints: trainable weights only ----------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.lora is not None:
            trainable = {n for n, p in self.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.lora is not None and self.model is not None:
            missing = {n for n, p in self.named_parameters() if p.requires_grad} - set(checkpoint["state_dict"])
            if missing:
                raise ConfigError(f"the checkpoint lacks {len(missing)} adapter weights (e.g. {sorted(missing)[0]}); "
                                   "was it trained with the same lora settings?")
