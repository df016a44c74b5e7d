"""The attention generation runs under: which SDPA kernels, and grouped-query decoding steps that do
not copy the key/value cache.

Two costs of transformers' SDPA path showed in the H200 profile of a greedy Qwen3-4B batch
(``bench/profile_step.py``, ``bench/NOTES.md``):

- cuDNN attention builds an execution plan for every new shape (~50-100 ms on an H200, against
  ~0.4 ms per call once planned: ``bench/results/sdpa_new_shapes.json``), and a growing key/value
  cache makes a new shape at every decoding step. So without a static cache, generation on CUDA
  uses the flash / memory-efficient kernels; a static cache keeps one shape and keeps cuDNN.
- With a padding mask, transformers 5.17's SDPA path copies every layer's whole key/value cache
  ``num_attention_heads / num_key_value_heads`` times at every decoding step (``repeat_kv``: SDPA's
  own ``enable_gqa`` is not used with a mask): for Qwen3-4B (32 query heads, 8 key/value heads) at
  batch 128 such copies were 45% of the GPU's kernel time in a batch (one profile). A decoding step
  has one query token, so the query heads of a group can instead be laid out as that group's query
  *rows* (``[batch, kv_heads, group, dim]``) and attend to the key/value heads as they are: the same
  attention, computed from the cache without a copy. transformers adopted the same layout in later
  versions (``pack_gqa`` in ``integrations/sdpa_attention.py``); ``sdpa_packed_gqa`` here gives it to
  the versions without it. Every other call (prefill, training, masks per head, compiled decoding)
  goes to transformers' own ``sdpa_attention_forward`` unchanged. In one H200 run the packed layout
  made the first, longest batch faster and the shorter ones slightly slower (``bench/NOTES.md``,
  third round).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.utils.import_utils import is_torchdynamo_compiling

PACKED_GQA = "sdpa_packed_gqa"  # a name with "sdpa" in it: transformers applies SDPA's own checks to it


def _packs(module, query: torch.Tensor, attention_mask, kwargs: dict) -> bool:
    """Whether this call is a single-token decoding step of grouped-query attention that the packed
    layout computes exactly (one mask for all heads; nothing SDPA's kernel would not see)."""
    groups = getattr(module, "num_key_value_groups", 1)
    return (groups > 1 and query.shape[2] == 1 and not module.training and not is_torchdynamo_compiling()
            and (attention_mask is None or attention_mask.shape[1] == 1)
            and kwargs.get("position_bias") is None and kwargs.get("softcap") is None)


def sdpa_packed_gqa(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask,
                    dropout: float = 0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' SDPA attention, with a grouped-query decoding step computed without ``repeat_kv``:
    query ``[b, heads, 1, d]`` -> ``[b, kv_heads, group, d]`` (head ``h`` uses key/value head ``h // group``,
    ``repeat_kv``'s order), one SDPA call over the cache, and back to ``[b, 1, heads, d]``."""
    if not _packs(module, query, attention_mask, kwargs):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    b, heads, _, d = query.shape
    packed = query.reshape(b, key.shape[1], heads // key.shape[1], d)
    out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(b, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


AttentionInterface.register(PACKED_GQA, sdpa_packed_gqa)
AttentionMaskInterface.register(PACKED_GQA, sdpa_mask)  # the same masks as "sdpa" (else transformers builds none)


def _base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model's transformers model


def uses_grouped_query_sdpa(model) -> bool:
    """Whether ``model`` runs transformers' SDPA attention with fewer key/value heads than query heads."""
    config = getattr(_base_model(model), "config", None)
    heads, kv_heads = getattr(config, "num_attention_heads", None), getattr(config, "num_key_value_heads", None)
    return getattr(config, "_attn_implementation", None) == "sdpa" and bool(heads and kv_heads and kv_heads < heads)


@contextmanager
def packed_gqa_decoding(models):
    """Decode ``models`` (those that use grouped-query SDPA) with ``sdpa_packed_gqa``, then put ``sdpa`` back
    (transformers' documented ``set_attn_implementation``; training and saved configs keep ``sdpa``)."""
    switched = [_base_model(m) for m in models if uses_grouped_query_sdpa(m)]
    try:
        for model in switched:
            model.set_attn_implementation(PACKED_GQA)
        yield
    finally:
        for model in switched:
            model.set_attn_implementation("sdpa")


def sdpa_without_cudnn():
    """SDPA may pick flash, memory-efficient or math kernels, not cuDNN attention."""
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def attention_for_generation(static_cache: bool, device: torch.device):
    """The SDPA kernels generation may use: on CUDA without a static cache, flash / memory-efficient
    instead of cuDNN (see the module's docstring); a static cache keeps one shape and keeps cuDNN."""
    if static_cache or device.type != "cuda":
        return nullcontext()
    return sdpa_without_cudnn()
