"""Loading tokenizers and models: a hub id or local directory, or a config for random init.

Random init from a config is how the quickstart, the tests and the benchmarks run with no hub
access: ``model_config: {model_type: bart, d_model: 128, ...}`` builds the architecture with fresh
weights (same speed and memory as trained ones). With ``pretrained`` set, ``model_config`` entries
override the pretrained config (e.g. ``dropout: 0.2``).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from transformers import AutoConfig, PretrainedConfig

from lightning_summ.paths import resolve_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got '{name}'")
    return DTYPES[name]


def build_config(pretrained: Optional[str], model_config: Optional[dict[str, Any]], tokenizer,
                 trust_remote_code: bool = False) -> PretrainedConfig:
    """The model's config: pretrained (plus overrides) or built from ``model_config`` alone.

    For random init, the vocabulary size and special token ids come from the tokenizer, so a
    config never disagrees with the tokenizer it is trained with.
    """
    overrides = dict(model_config or {})
    if pretrained:
        return AutoConfig.from_pretrained(resolve_path(pretrained), trust_remote_code=trust_remote_code, **overrides)
    if "model_type" not in overrides:
        raise ValueError("model.model_config needs 'model_type' (e.g. bart, t5, llama) when model.pretrained is not set")
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
           "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    for key, value in ids.items():
        overrides.setdefault(key, value)
    return AutoConfig.for_model(overrides.pop("model_type"), **overrides)


def load_model(auto_class, pretrained: Optional[str], config: PretrainedConfig, dtype: str = "float32",
               trust_remote_code: bool = False, **kwargs):
    """``auto_class.from_pretrained`` (weights) or ``auto_class.from_config`` (random init), with SDPA
    attention. The result is put in train mode: ``from_pretrained`` returns it in eval mode and
    Lightning does not switch it back, which silently disables dropout."""
    common = {"dtype": torch_dtype(dtype), "trust_remote_code": trust_remote_code, "attn_implementation": "sdpa"}
    if pretrained:
        model = auto_class.from_pretrained(resolve_path(pretrained), config=config, **common, **kwargs)
    else:
        model = auto_class.from_config(config, **common)
    return model.train()
