"""Padding and collate functions: features (lists of token ids) into batches of tensors.

Small named functions (``pad_left``, ``pad_right``, ``position_ids_for``) and one collator per
layout: right-padded encoder-decoder rows, left-padded decoder-only rows (every summary ends at the
last position, and generation appends at the right), and packed decoder-only rows. Every batch also
carries its rows' metadata (index, fname, references, dialogue), so outputs go back in input order.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def padded_width(seqs: Sequence[Sequence[int]], multiple: int = 1) -> int:
    """The longest row, rounded up to ``multiple``: batches then come in a few lengths only, so
    shape-specialised GPU work (cuDNN attention plans, compiled graphs) is prepared once per length."""
    width = max(len(s) for s in seqs)
    return -(-width // multiple) * multiple


def pad_right(seqs: Sequence[Sequence[int]], value: int, multiple: int = 1) -> torch.Tensor:
    width = padded_width(seqs, multiple)
    return torch.tensor([list(s) + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def pad_left(seqs: Sequence[Sequence[int]], value: int, multiple: int = 1) -> torch.Tensor:
    """Left padding: decoder-only generation appends new tokens at the right end of every row."""
    width = padded_width(seqs, multiple)
    return torch.tensor([[value] * (width - len(s)) + list(s) for s in seqs], dtype=torch.long)


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on the first real token of each left-padded row (as ``generate`` does)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def summary_start(labels: torch.Tensor) -> int:
    """The first position where any left-padded row's summary (its first label) starts: the causal
    loss runs the output head on the positions from there on."""
    return int((labels != -100).int().argmax(-1).min()) if labels.shape[1] else 0


def collate_metadata(features: list[dict]) -> dict:
    """The non-tensor part every batch carries: row index, fname, references, dialogue text (for
    test-time augmentation, which re-encodes modified dialogues)."""
    return {
        "index": torch.tensor([f["index"] for f in features], dtype=torch.long),
        "fname": [f["fname"] for f in features],
        "references": [f["references"] for f in features],
        "dialogue": [f.get("dialogue", "") for f in features],
    }


class Seq2SeqCollator:
    """Right-pads sources (attention mask) and labels (-100, ignored by the loss)."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int = 1):
        self.pad_id, self.multiple = pad_id, pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        batch = collate_metadata(features)
        batch["input_ids"] = pad_right([f["input_ids"] for f in features], self.pad_id, self.multiple)
        batch["attention_mask"] = pad_right([[1] * len(f["input_ids"]) for f in features], 0, self.multiple)
        batch["num_tokens"] = sum(len(f["input_ids"]) for f in features)  # real tokens, for speed reports
        if all("labels" in f for f in features):
            batch["labels"] = pad_right([f["labels"] for f in features], -100, self.multiple)
            batch["num_tokens"] += sum(len(f["labels"]) for f in features)
        return batch


class CausalCollator:
    """Left-pads everything; training rows end with ``summary + EOS``, generation rows with the prompt."""

    def __init__(self, pad_id: int, for_generation: bool, pad_to_multiple_of: int = 1):
        self.pad_id, self.for_generation, self.multiple = pad_id, for_generation, pad_to_multiple_of

    def _pad(self, seqs: list[list[int]], labels: Optional[list[list[int]]] = None, prefix: str = "") -> dict:
        padded = {f"{prefix}input_ids": pad_left(seqs, self.pad_id, self.multiple),
                  f"{prefix}attention_mask": pad_left([[1] * len(s) for s in seqs], 0, self.multiple)}
        if labels is not None:
            padded[f"{prefix}labels"] = pad_left(labels, -100, self.multiple)
            # a Python int made here, on the host: the loss needs it before the GPU has the labels
            padded[f"{prefix}summary_start"] = summary_start(padded[f"{prefix}labels"])
        return padded

    def __call__(self, features: list[dict]) -> dict:
        batch = collate_metadata(features)
        batch["num_tokens"] = sum(len(f["input_ids"]) for f in features)  # real tokens, for speed reports
        if not self.for_generation:
            batch.update(self._pad([f["input_ids"] for f in features], [f["labels"] for f in features]))
            return batch
        batch.update(self._pad([f["input_ids"] for f in features]))
        if all("loss_input_ids" in f for f in features):  # validation/test: loss on prompt + gold summary
            batch.update(self._pad([f["loss_input_ids"] for f in features], [f["loss_labels"] for f in features],
                                   prefix="loss_"))
        return batch


class PackingCollator:
    """Padding-free training rows for decoder-only models (``data.packing``): the batch's examples
    (prompt + summary) are packed first-fit, longest first, into rows of at most ``row_length``
    tokens, and the rows are right-padded to the longest.

    No attention mask: ``position_ids`` restart at 0 for every example (and for the padding), and
    transformers (5.x, with no mask and no cache) builds from them a block-diagonal causal mask, so
    no example attends to another. The first label of every example is -100 (always a prompt token
    already): no position is trained to predict the next example.
    """

    def __init__(self, pad_id: int, row_length: int, pad_to_multiple_of: int = 1):
        self.pad_id, self.row_length, self.multiple = pad_id, row_length, pad_to_multiple_of

    def rows(self, features: list[dict]) -> list[list[dict]]:
        """First-fit decreasing: each example into the first row with room for it."""
        rows: list[list[dict]] = []
        room: list[int] = []
        for feature in sorted(features, key=lambda f: len(f["input_ids"]), reverse=True):
            size = len(feature["input_ids"])
            slot = next((r for r, left in enumerate(room) if left >= size), None)
            if slot is None:
                rows.append([])
                room.append(self.row_length)
                slot = len(rows) - 1
            rows[slot].append(feature)
            room[slot] -= size
        return rows

    def __call__(self, features: list[dict]) -> dict:
        batch = collate_metadata(features)
        batch["num_tokens"] = sum(len(f["input_ids"]) for f in features)
        ids, labels, positions = [], [], []
        for row in self.rows(features):
            ids.append([t for f in row for t in f["input_ids"]])
            labels.append([t for f in row for t in [-100, *f["labels"][1:]]])
            positions.append([p for f in row for p in range(len(f["input_ids"]))])
        width = padded_width(ids, self.multiple)
        batch["input_ids"] = pad_right(ids, self.pad_id, self.multiple)
        batch["labels"] = pad_right(labels, -100, self.multiple)
        # the padding is a block of its own (positions from 0): it attends only to itself
        batch["position_ids"] = torch.tensor([p + list(range(width - len(p))) for p in positions], dtype=torch.long)
        return batch
