"""Settings groups shared by every summarizer; each becomes a nested block in the YAML config."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Optional, Union


@dataclass
class GenerationSettings:
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
            dynamic cache in our (CPU) tests. Not for 4-bit (QLoRA) models, which transformers does
            not compile, nor for soft voting.
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

    def generate_kwargs(self) -> dict:
        """Keyword arguments for ``generate``; sampling knobs only when sampling (HF warns otherwise)."""
        if self.num_return_sequences > max(self.num_beams, 1) and not self.do_sample:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) > num_beams ({self.num_beams}) "
                             "needs do_sample: true")
        kwargs = asdict(self)
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
class OptimizerSettings:
    """AdamW with warmup and decay.

    Args:
        lr: peak learning rate.
        weight_decay: decoupled weight decay (not applied to biases and norms).
        betas: AdamW betas.
        eps: AdamW epsilon.
        scheduler: decay after warmup: ``linear`` to 0, ``cosine`` to 0, or ``constant``.
        warmup_ratio: warmup as a fraction of all optimizer steps (used when ``warmup_steps`` is 0).
        warmup_steps: warmup steps.
        fused: fused AdamW kernel; ``None`` uses it whenever the parameters are on a GPU.
    """

    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    fused: Optional[bool] = None


@dataclass
class EvaluationSettings:
    """How validation generates and scores summaries.

    Args:
        rouge_tokenizer: ``morpheme`` (Korean, kiwipiepy), ``whitespace`` or ``char``.
        multi_ref: combine several references by ``mean`` (competition) or ``max``.
        generate_every_n_epochs: run generation + ROUGE on every n-th validation (loss is always computed).
        generate_limit: generate for only the first N validation rows (``None`` = all).
        num_text_samples: prediction/reference pairs shown in TensorBoard's text tab each validation.
    """

    rouge_tokenizer: Literal["morpheme", "whitespace", "char"] = "morpheme"
    multi_ref: Literal["mean", "max"] = "mean"
    generate_every_n_epochs: int = 1
    generate_limit: Optional[int] = None
    num_text_samples: int = 4


@dataclass
class LoraSettings:
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


@dataclass
class QuantizationSettings:
    """bitsandbytes quantization of the frozen base model (QLoRA).

    Args:
        bits: 4 (nf4/fp4) or 8 (LLM.int8).
        quant_type: 4-bit data type, ``nf4`` (QLoRA's) or ``fp4``.
        double_quant: also quantize the quantization constants (saves ~0.4 bit per parameter).
        compute_dtype: dtype of the 4-bit matmuls; ``auto`` = the training precision's dtype
            (bf16 under ``bf16-mixed``, fp16 under ``16-mixed``, fp32 otherwise).
    """

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
