"""Helpers shared by the two sides of ``speed_vs_hf.py``: GPU timing and peak memory."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's lightning_summ, installed or not


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> int:
    """Free what the previous run left and start a new peak; returns the bytes still allocated."""
    gc.collect()
    if not torch.cuda.is_available():
        return 0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def peak_gb(base: int = 0):
    """Peak GPU memory of this run: the allocator's peak minus what was already allocated before it."""
    if not torch.cuda.is_available():
        return None
    return round((torch.cuda.max_memory_allocated() - base) / 2**30, 2)
