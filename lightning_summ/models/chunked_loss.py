"""Output head + cross-entropy a chunk of positions at a time (``model.init_args.loss_chunk_size``).

With a 152k-token vocabulary the logits of the summary positions are the largest tensor of a LoRA
step: [positions x vocabulary] in the compute dtype, again in fp32 for the loss, and again for the
gradient. Here the head and the fp32 cross-entropy run on ``chunk_size`` positions at a time, each
chunk under ``torch.utils.checkpoint``: backward recomputes a chunk's logits instead of keeping
them, so at most one chunk's logits exist at any moment. Same loss and gradients as one head call
(the mean over all target tokens of the batch), at the price of a second head matmul in backward.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _chunk_loss_sum(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def chunked_head_cross_entropy(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor,
                               chunk_size: Optional[int]) -> torch.Tensor:
    """Mean cross-entropy of ``head(hidden)`` against ``targets`` (``-100`` = ignored).

    ``hidden`` is [..., hidden_size] and ``targets`` the matching [...] ids; only positions with a
    target reach the head (as ``F.cross_entropy(..., ignore_index=-100)`` would count them).
    ``chunk_size`` ``None``: one head call over those positions, nothing recomputed.
    """
    valid = targets != -100
    hidden, targets = hidden[valid], targets[valid]
    count = targets.numel()
    if not count:
        return hidden.sum() * float("nan")  # as F.cross_entropy over no targets: nan, and no crash
    if chunk_size is None:
        return _chunk_loss_sum(head, hidden, targets) / count
    total = sum(checkpoint(_chunk_loss_sum, head, hidden[i:i + chunk_size], targets[i:i + chunk_size],
                           use_reentrant=False) for i in range(0, count, chunk_size))
    return total / count
