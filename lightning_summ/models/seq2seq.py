"""Encoder-decoder summarization (KoBART, BART, T5, mBART...)."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from transformers import AutoModelForSeq2SeqLM

from lightning_summ.errors import ConfigError
from lightning_summ.models.base import SummarizerBase
from lightning_summ.models.loading import build_config, load_model
from lightning_summ.models.settings import EvaluationSettings, GenerationSettings, OptimizerSettings
from lightning_summ.processing import Seq2SeqProcessor


class Seq2SeqSummarizer(SummarizerBase):
    """Fine-tune and run an encoder-decoder summarizer.

    Args:
        pretrained: hub id or local directory of a pretrained model (e.g. ``gogamza/kobart-base-v2``).
        model_config: config overrides; without ``pretrained``, a full config for random init
            (``{model_type: bart, d_model: 128, ...}``).
        tokenizer: hub id, local directory or ``pkg://`` path; defaults to ``pretrained``.
        max_source_length: dialogue tokens kept (the end is cut).
        max_target_length: summary tokens trained on.
        label_smoothing: cross-entropy label smoothing.
        dtype: dtype of the weights as loaded; keep ``float32`` with mixed precision (the
            optimizer needs fp32 master weights).
        generation: decoding options.
        optimizer: AdamW and schedule.
        evaluation: validation generation and ROUGE.
        trust_remote_code: allow code from the model repository to run.
        ensemble_checkpoints: other checkpoints of this same config (e.g. the k-fold models) to
            decode with by soft voting: one beam search on the mean of all models' next-token
            log-probabilities (validate/test/predict only; the ``--ckpt_path`` model is the first member).
        compile: torch.compile for training steps: ``true`` (inductor), ``auto`` (inductor on
            CUDA, eager on a CPU), ``false`` or a backend's name; how it works and when it pays:
            ``lightning_summ.models.compilation``.
        compile_scope: what ``compile`` compiles: ``blocks`` (each transformer block) or ``step``
            (a training step's whole loss computation; one graph each way on transformers 5.24, not on 5.17).
        compile_mode: torch.compile's mode for inductor: null (its default), ``reduce-overhead`` or
            ``max-autotune`` (both replay CUDA graphs: no gradient accumulation), or
            ``max-autotune-no-cudagraphs``.
        cudnn_attention: allow cuDNN attention in training on CUDA (off: flash / memory-efficient
            kernels; why: ``SummarizerBase.attention_for_training``).
    """

    def __init__(
        self,
        pretrained: Optional[str] = None,
        model_config: Optional[dict[str, Any]] = None,
        tokenizer: Optional[str] = None,
        max_source_length: int = 512,
        max_target_length: int = 100,
        label_smoothing: float = 0.0,
        dtype: str = "float32",
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
        processor = Seq2SeqProcessor(tokenizer or pretrained, max_source_length, max_target_length, trust_remote_code)
        super().__init__(processor, generation, optimizer, evaluation, trust_remote_code, ensemble_checkpoints,
                         compile=compile, compile_scope=compile_scope, compile_mode=compile_mode,
                         cudnn_attention=cudnn_attention)
        self.pretrained, self.model_config, self.weights_dtype = pretrained, model_config, dtype
        self.label_smoothing = label_smoothing
        self.save_hyperparameters()
        self._plain_hparams()

    @property
    def decoder_start_token_id(self) -> Optional[int]:
        return self.model.config.decoder_start_token_id

    def build_model(self) -> torch.nn.Module:
        config = build_config(self.pretrained, self.model_config, self.tokenizer, self.trust_remote_code)
        # getattr: T5's config has no decoder_start_token_id until one is set
        if not self.pretrained and getattr(config, "decoder_start_token_id", None) is None:
            config.decoder_start_token_id = self.tokenizer.eos_token_id  # BART's convention
        model = load_model(AutoModelForSeq2SeqLM, self.pretrained, config, self.weights_dtype, self.trust_remote_code)
        if len(self.tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(self.tokenizer))  # the added #Tag# tokens
        return model

    def compute_loss(self, batch: dict) -> torch.Tensor:
        labels = batch["labels"]
        # The loss is ours (label smoothing), so the model gets the decoder inputs it would shift from
        # the labels, not the labels: given labels, it also computes its own cross-entropy over
        # [rows x target x vocabulary], in fp32 under autocast, that nobody reads. use_cache=False as
        # labels would set it (a training forward that fills a cache wastes memory and recompiles).
        shift = getattr(self.model, "prepare_decoder_input_ids_from_labels", None)
        # a copy: some families' shift fills the -100s in place (FSMT), which the loss below still needs
        targets = {"decoder_input_ids": shift(labels=labels.clone())} if shift is not None else {"labels": labels}
        masks = _ready_masks(self.model.config, batch["attention_mask"], labels.shape[1])
        logits = self.model(input_ids=batch["input_ids"], use_cache=False, **masks, **targets).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                               label_smoothing=self.label_smoothing)


# Families whose attention takes transformers' shared masks (masking_utils): a ready 4-D boolean
# mask means the same to them as the 2-D one it is made from. Only families checked by a test are
# listed (the others, T5 included, keep the 2-D masks and transformers' checks).
READY_MASK_FAMILIES = ("bart", "mbart", "pegasus")


def _ready_masks(config, attention_mask: torch.Tensor, target_length: int) -> dict:
    """The training forward's masks, ready for SDPA, so that transformers does not inspect them.

    Given 2-D masks, transformers 5 asks whether each could be skipped (``padding_mask.all()``):
    a GPU-to-host read that makes the host wait for the GPU, three times per BART step (the
    encoder's and the cross-attention's padding, and the decoder's all-ones mask, which BART makes
    itself when no decoder mask is given). A 4-D mask is used as it is. The padding mask's
    ``[rows, 1, 1, source]`` broadcasts over the queries as transformers' expanded one does; the
    decoder's causal mask is given explicitly, which costs SDPA's ``is_causal`` flash path for the
    decoder's self-attention (targets are short: ``max_target_length`` tokens, rounded up to
    ``data.pad_to_multiple_of``). Other attention implementations (eager adds a float mask, flash
    takes 2-D) keep the 2-D mask. So does a traced forward (``compile_scope: step``): there
    transformers checks nothing, and the decoder keeps ``is_causal``.
    """
    if (getattr(config, "_attn_implementation", None) != "sdpa"
            or getattr(config, "model_type", None) not in READY_MASK_FAMILIES
            or torch.compiler.is_compiling()):
        return {"attention_mask": attention_mask}
    padding = attention_mask.bool()[:, None, None, :]
    causal = torch.ones(target_length, target_length, dtype=torch.bool, device=attention_mask.device).tril_()
    return {"attention_mask": padding, "decoder_attention_mask": causal[None, None]}
