"""The one place that decides numeric precision, and refuses combinations known to crash.

The seed project trained bf16 weights under ``16-mixed``: Lightning's fp16 plugin uses a
``GradScaler``, whose unscale kernel has no bf16 implementation, so the first optimizer step died
with ``_amp_foreach_non_finite_check_and_unscale_cuda not implemented for 'BFloat16'``. Its "fix"
was to turn mixed precision off. The rules here instead:

* ``auto`` resolves to ``bf16-mixed`` on a GPU that supports bf16 (no GradScaler needed), to
  ``16-mixed`` on an older GPU (our models keep trainable parameters in fp32, so the scaler works),
  and to ``32-true`` on CPU, where autocast rarely pays for itself.
* :func:`check_trainable_dtypes` runs at fit start and fails with one line when a GradScaler would
  meet non-fp32 trainable parameters, or when ``*-true`` half precision would train them directly.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from lightning_summ.errors import UserError


class PrecisionError(UserError):
    """An unsafe precision/parameter-dtype combination, explained in one line."""


def resolve_precision(precision: Optional[Union[str, int]], accelerator: Optional[str] = "auto") -> Union[str, int, None]:
    """Map ``"auto"`` to a concrete Lightning precision string; pass anything else through."""
    if precision != "auto":
        return precision
    wants_gpu = accelerator in (None, "auto", "gpu", "cuda")
    if wants_gpu and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def uses_grad_scaler(precision_plugin) -> bool:
    """True when Lightning's plugin scales the loss (fp16 mixed precision)."""
    return getattr(precision_plugin, "scaler", None) is not None


def check_trainable_dtypes(module: torch.nn.Module, precision: str, grad_scaler: bool) -> None:
    """Raise :class:`PrecisionError` for combinations that crash or silently lose updates."""
    bad = [(n, p.dtype) for n, p in module.named_parameters() if p.requires_grad and p.dtype != torch.float32]
    if not bad:
        return
    name, dtype = bad[0]
    if grad_scaler:
        raise PrecisionError(
            f"precision '{precision}' uses a GradScaler, which cannot unscale {dtype} gradients, but {len(bad)} "
            f"trainable parameters are not float32 (first: '{name}', {dtype}); use precision 'bf16-mixed' or "
            "'auto', or load the model with dtype float32 (mixed precision still computes in half precision)"
        )
    if "mixed" in str(precision):
        raise PrecisionError(
            f"precision '{precision}' expects float32 master weights, but {len(bad)} trainable parameters are "
            f"{dtype} (first: '{name}'): AdamW updates smaller than half-precision resolution would be lost; "
            "load the model with dtype float32 or train adapters (LoRA) in float32"
        )
