"""Settings groups shared by every summarizer; each becomes a nested block in the YAML config.

Each group checks itself when it is built (``__post_init__``, as litgpt's ``TrainArgs`` does), so a
wrong or contradictory value fails before any model is loaded, with one :class:`ConfigError` line
that names the option as the YAML spells it: ``generation.num_beams must be >= 1, got 0``.
"""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, fields
from typing import Literal, Optional, Union

from lightning_summ.errors import ConfigError


@dataclass
class _Checked:
    """``__post_init__`` checks every ``Literal`` field (the CLI does, plain Python construction does
    not), then the group's own rules in ``check``; ``BLOCK`` is the group's YAML key. A dataclass
    itself: jsonargparse keeps a group of pure dataclasses a plain YAML block (no ``class_path``)."""

    BLOCK = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is Literal else ()
            if choices and getattr(self, f.name) not in choices:
                self._fail(f.name, f"must be one of {', '.join(map(str, choices))}", getattr(self, f.name))
        self.check()

    def check(self) -> None:
        """The group's rules; raise through :meth:`_require`."""

    def _fail(self, name: str, rule: str, value) -> None:
        raise ConfigError(f"{self.BLOCK}.{name} {rule}, got {value!r}")

    def _require(self, ok: bool, name: str, rule: str) -> None:
        if not ok:
            self._fail(name, rule, getattr(self, name))


@dataclass
class GenerationSettings(_Checked):
    """Decoding options, passed to ``model.generate`` for validation, test and predict.

    Args:
        num_beams: beam width (1 = greedy or sampling).
        max_new_tokens: longest summary, in tokens.
        min_new_tokens: shortest summary (set equal to ``max_new_tokens`` to force a fixed length in benchmarks).
        length_penalty: beam score exponent on length (>1 favours longer summaries).
        repetition_penalty: >1 discourages repeating tokens.
        no_repeat_ngram_size: forbid repeating any n-gram of this size (0 = off).
        early_stopping: stop beam search when ``num_beams`` finished candidates exist.
        do_sample: sample instead of searching; enables ``temperature``, ``top_p`` and ``top_k``.
        temperature: sampling temperature.
        top_p: nucleus sampling mass.
        top_k: sample among the k most likely tokens.
        num_return_sequences: candidates kept per input (written to the candidates JSONL; the best one is the summary).
        static_cache: preallocate the key/value cache (transformers' ``cache_implementation="static"``).
            On a CUDA GPU transformers then compiles the decoding step (``torch.compile``, CUDA graphs):
            a one-time compile per model, then far less per-token overhead; the same outputs as the
            dynamic cache in our (CPU) tests. Within validate/test/predict the last, smaller batch is
            filled up to the compiled batch size (copies of a row, dropped after) instead of
            recompiling. Not for 4-bit (QLoRA) models, which transformers does not compile, nor for
            soft voting.
        packed_gqa: with a dynamic cache, compute each single-token decoding step of grouped-query
            attention (fewer key/value heads than query heads: Qwen3, Llama 3) over the cache as it is,
            instead of transformers' SDPA path copying every layer's cache once per query head group
            at every step (``decoding/attention.py``; the same attention). Measured once on an H200
            (bf16 Qwen3-4B, batch 128, 499 dialogues): 1.10x end to end, all of it in the first,
            longest batch (0.97x over the rest). Models without grouped heads (BART, GPT-NeoX) are not affected.
    """

    num_beams: int = 4
    max_new_tokens: int = 100
    min_new_tokens: int = 0
    length_penalty: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    early_stopping: bool = True
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    num_return_sequences: int = 1
    static_cache: bool = False
    packed_gqa: bool = True

    BLOCK = "generation"

    def check(self) -> None:
        self._require(self.num_beams >= 1, "num_beams", "must be >= 1")
        self._require(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
        self._require(0 <= self.min_new_tokens <= self.max_new_tokens, "min_new_tokens",
                      f"must be in [0, generation.max_new_tokens = {self.max_new_tokens}]")
        self._require(self.num_return_sequences >= 1, "num_return_sequences", "must be >= 1")
        self._require(self.do_sample or self.num_return_sequences <= self.num_beams, "num_return_sequences",
                      f"must be <= generation.num_beams ({self.num_beams}) unless generation.do_sample is true")
        self._require(self.temperature > 0, "temperature", "must be > 0")
        self._require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        self._require(self.top_k >= 0, "top_k", "must be >= 0")
        self._require(math.isfinite(self.length_penalty), "length_penalty", "must be a finite number")
        self._require(self.repetition_penalty > 0, "repetition_penalty", "must be > 0")
        self._require(self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size", "must be >= 0 (0 = off)")

    def generate_kwargs(self) -> dict:
        """Keyword arguments for ``generate``; sampling knobs only when sampling (HF warns otherwise)."""
        kwargs = asdict(self)
        kwargs.pop("packed_gqa")  # how the decoder runs attention, not an argument of generate
        if kwargs.pop("static_cache"):
            kwargs["cache_implementation"] = "static"
        if not self.do_sample:
            for key in ("temperature", "top_p", "top_k"):
                kwargs.pop(key)
        if self.num_beams <= 1:
            kwargs.pop("early_stopping")
            kwargs.pop("length_penalty")
        return kwargs


@dataclass
class OptimizerSettings(_Checked):
    """AdamW with warmup and decay.

    Args:
        lr: peak learning rate.
        weight_decay: decoupled weight decay (not applied to biases and norms).
        betas: AdamW betas.
        eps: AdamW epsilon.
        scheduler: decay after warmup: ``linear`` to 0, ``cosine`` to 0, or ``constant``.
        warmup_ratio: warmup as a fraction of all optimizer steps, in [0, 1).
        warmup_steps: warmup steps (set either this or ``warmup_ratio``, not both).
        fused: fused AdamW kernel; ``None`` uses it whenever the parameters are on a GPU.
        schedule_to: what warmup and decay are planned over. ``max_epochs``: optimizer steps of
            the planned epochs (or ``trainer.max_steps``). ``max_time``: the wall-clock budget
            ``trainer.max_time``; progress is training time / (budget - validation time so far),
            so the lr reaches 0 (linear, cosine) when the time is up; ``warmup_ratio`` is then a
            fraction of the budget, ``warmup_steps`` still counts steps. Needs ``trainer.max_time``.
    """

    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    fused: Optional[bool] = None
    schedule_to: Literal["max_epochs", "max_time"] = "max_epochs"

    BLOCK = "optimizer"

    def check(self) -> None:
        self._require(self.lr > 0, "lr", "must be > 0")
        self._require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        self._require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas",
                      "must be two numbers in [0, 1)")
        self._require(self.eps > 0, "eps", "must be > 0")
        self._require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        self._require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        if self.warmup_ratio and self.warmup_steps:
            raise ConfigError(f"optimizer.warmup_ratio ({self.warmup_ratio}) and optimizer.warmup_steps "
                              f"({self.warmup_steps}) are both set; set only one of them")


@dataclass
class EvaluationSettings(_Checked):
    """How validation generates and scores summaries.

    Args:
        rouge_tokenizer: ``morpheme`` (Korean, kiwipiepy), ``whitespace`` or ``char``.
        multi_ref: combine several references by ``mean`` (competition) or ``max``.
        generate_every_n_epochs: run generation + ROUGE on every n-th validation (loss is always computed);
            checkpoints and early stopping (``lightning_summ.callbacks``) follow this cadence by themselves.
        generate_limit: generate for only the first N validation rows (``None`` = all).
        num_text_samples: prediction/reference pairs shown in TensorBoard's text tab each validation.
    """

    rouge_tokenizer: Literal["morpheme", "whitespace", "char"] = "morpheme"
    multi_ref: Literal["mean", "max"] = "mean"
    generate_every_n_epochs: int = 1
    generate_limit: Optional[int] = None
    num_text_samples: int = 4

    BLOCK = "evaluation"

    def check(self) -> None:
        self._require(self.generate_every_n_epochs >= 1, "generate_every_n_epochs", "must be >= 1")
        self._require(self.generate_limit is None or self.generate_limit >= 1, "generate_limit",
                      "must be null (all rows) or >= 1")
        self._require(self.num_text_samples >= 0, "num_text_samples", "must be >= 0")


@dataclass
class LoraSettings(_Checked):
    """LoRA adapters through peft.

    Args:
        r: adapter rank.
        alpha: scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the adapter input.
        target_modules: ``all-linear`` (every linear layer but the output head) or module names,
            e.g. ``[q_proj, k_proj, v_proj, o_proj]`` (Llama/Qwen) or ``[query_key_value, dense]`` (GPT-NeoX).
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: Union[str, list[str]] = "all-linear"

    BLOCK = "lora"

    def check(self) -> None:
        self._require(self.r >= 1, "r", "must be >= 1")
        self._require(self.alpha > 0, "alpha", "must be > 0")
        self._require(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        self._require(bool(self.target_modules), "target_modules", "must name at least one module or be all-linear")


@dataclass
class QuantizationSettings(_Checked):
    """bitsandbytes quantization of the frozen base model (QLoRA).

    Args:
        bits: 4 (nf4/fp4) or 8 (LLM.int8).
        quant_type: 4-bit data type, ``nf4`` (QLoRA's) or ``fp4``; 4-bit only.
        double_quant: also quantize the quantization constants (saves ~0.4 bit per parameter); 4-bit only.
        compute_dtype: dtype of the 4-bit matmuls; ``auto`` = the training precision's dtype
            (bf16 under ``bf16-mixed``, fp16 under ``16-mixed``, fp32 otherwise); 4-bit only.
        dequantize_for_inference: for validate/test/predict outside ``fit``, decode with the base's
            4-bit linears replaced by dequantized copies in the compute dtype (the values the 4-bit
            matmul uses, so the same outputs up to rounding; no dequantisation per matmul), when
            the free GPU memory holds them (~2 bytes per base weight; else it says so and keeps the
            4-bit base); the 4-bit layers return when the stage ends; 4-bit only.
    """

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    dequantize_for_inference: bool = False

    BLOCK = "quantization"

    def check(self) -> None:
        if self.bits != 8:
            return
        # LLM.int8 has none of these knobs: a changed value would be dropped without a word.
        for f in fields(self):
            if f.name != "bits" and getattr(self, f.name) != f.default:
                raise ConfigError(f"quantization.{f.name} ({getattr(self, f.name)!r}) applies to 4-bit only, but "
                                  f"quantization.bits is 8; remove it or set quantization.bits to 4")
