"""Batch samplers and collate functions.

Training batches group dialogues of similar length (less padding, same randomness across epochs
through a seeded shuffle); generation batches are sorted by length, longest first, so that an
out-of-memory error shows at once rather than at the end. Every feature carries its row ``index``,
so outputs are put back in input order afterwards, whatever order the batches ran in.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch
from torch.utils.data import Sampler


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length examples.

    Indices are shuffled, cut into pools of ``batch_size * pool_factor``, each pool sorted by length
    and cut into batches, and the batches shuffled again. Under several processes each rank takes
    every ``num_replicas``-th batch (the list is padded by repetition so that ranks stay in step).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 pool_factor: int = 50, drop_last: bool = False, num_replicas: int = 1, rank: int = 0):
        self.lengths, self.batch_size, self.shuffle, self.seed = list(lengths), batch_size, shuffle, seed
        self.pool_factor, self.drop_last = pool_factor, drop_last
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        pool = self.batch_size * self.pool_factor
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=lambda i: self.lengths[i], reverse=True)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            rng.shuffle(batches)
        if self.num_replicas > 1 and batches:
            batches += batches[: (-len(batches)) % self.num_replicas]
        return batches

    def __iter__(self):
        yield from self._all_batches()[self.rank::self.num_replicas]

    def __len__(self) -> int:
        return len(self._all_batches()[self.rank::self.num_replicas])


class SortedBatchSampler(Sampler[list[int]]):
    """Batches for generation, longest first. Under several processes each rank takes every
    ``num_replicas``-th batch (padded by repetition; results are de-duplicated by row index)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, num_replicas: int = 1, rank: int = 0):
        order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if num_replicas > 1 and batches:
            batches += batches[: (-len(batches)) % num_replicas]
        self.batches = batches[rank::num_replicas]

    def __iter__(self):
        yield from self.batches

    def __len__(self) -> int:
        return len(self.batches)


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Batches filled up to ``max_tokens`` padded tokens instead of a fixed number of rows.

    Each example has one length per sequence its batch pads (seq2seq: source and target; decoder-
    only: prompt + summary, plus the loss sequence at validation); a batch costs ``rows x sum of
    the padded widths`` (widths rounded up to ``multiple``, as the collator pads). Examples are
    sorted by length and cut greedily into batches that stay within the budget; one example longer
    than the budget on its own gets a batch of its own (it is never dropped).

    Training (``shuffle``): examples whose padded widths are equal (lengths rounded up to
    ``multiple``) trade places at random and the batches are shuffled, seeded by ``seed + epoch``.
    The batches' costs then depend only on the multiset of padded widths, so every epoch has exactly
    the same number of batches, ``len(sampler)`` is exact and the schedule planned from it
    (``estimated_stepping_batches``) ends where the training does. The price: with ``multiple`` 1
    and diverse lengths, a batch holds much the same examples every epoch (in another order);
    ``pad_to_multiple_of`` 64, advised on a GPU anyway, mixes every 64-token band.
    Generation (no shuffle): longest first. Under several processes each rank takes every
    ``num_replicas``-th batch (the list padded by repetition so that ranks stay in step).
    """

    def __init__(self, lengths: Sequence[Sequence[int]], max_tokens: int, shuffle: bool = True, seed: int = 0,
                 multiple: int = 1, num_replicas: int = 1, rank: int = 0):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.lengths = [tuple(length) for length in lengths]
        self.max_tokens, self.shuffle, self.seed, self.multiple = max_tokens, shuffle, seed, multiple
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0
        self._cached: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _round(self, width: int) -> int:
        return -(-width // self.multiple) * self.multiple

    def _cost(self, rows: int, widths: Sequence[int]) -> int:
        return rows * sum(self._round(w) for w in widths)

    def _fill(self, order: list[int]) -> list[list[int]]:
        """Greedy batches over ``order`` (sorted, longest first) within the token budget."""
        batches, batch, widths = [], [], ()
        for i in order:
            grown = tuple(map(max, widths, self.lengths[i])) if batch else self.lengths[i]
            if batch and self._cost(len(batch) + 1, grown) > self.max_tokens:
                batches.append(batch)
                batch, grown = [], self.lengths[i]
            batch, widths = batch + [i], grown
        return batches + ([batch] if batch else [])

    def _all_batches(self) -> list[list[int]]:
        if self._cached is not None and self._cached[0] == self.epoch:
            return self._cached[1]
        rng = random.Random(self.seed + self.epoch)
        ties = [rng.random() for _ in self.lengths] if self.shuffle else [0.0] * len(self.lengths)
        # Sorted by the padded widths the cost counts: rows whose widths round alike trade places.
        order = sorted(range(len(self.lengths)), key=lambda i: (tuple(map(self._round, self.lengths[i])), ties[i]),
                       reverse=True)
        batches = self._fill(order)
        if self.shuffle:
            rng.shuffle(batches)
        if self.num_replicas > 1 and batches:
            batches += batches[: (-len(batches)) % self.num_replicas]
        self._cached = (self.epoch, batches)
        return batches

    def __iter__(self):
        yield from self._all_batches()[self.rank::self.num_replicas]

    def __len__(self) -> int:
        return len(self._all_batches()[self.rank::self.num_replicas])


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

    def _pad(self, seqs: list[list[int]], labels: list[list[int]], prefix: str = "") -> dict:
        return {f"{prefix}input_ids": pad_left(seqs, self.pad_id, self.multiple),
                f"{prefix}attention_mask": pad_left([[1] * len(s) for s in seqs], 0, self.multiple),
                f"{prefix}labels": pad_left(labels, -100, self.multiple)}

    def __call__(self, features: list[dict]) -> dict:
        batch = collate_metadata(features)
        batch["num_tokens"] = sum(len(f["input_ids"]) for f in features)  # real tokens, for speed reports
        if not self.for_generation:
            batch.update(self._pad([f["input_ids"] for f in features], [f["labels"] for f in features]))
            return batch
        batch["input_ids"] = pad_left([f["input_ids"] for f in features], self.pad_id, self.multiple)
        batch["attention_mask"] = pad_left([[1] * len(f["input_ids"]) for f in features], 0, self.multiple)
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
