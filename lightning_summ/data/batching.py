"""Batch samplers and collate functions.

Training batches group dialogues of similar length (less padding, same randomness across epochs
through a seeded shuffle); generation batches are sorted by length, longest first, so that an
out-of-memory error shows at once rather than at the end. Every feature carries its row ``index``,
so outputs are put back in input order afterwards, whatever order the batches ran in.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Sampler

from lightning_summ.errors import ConfigError


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length examples.

    Indices are shuffled, cut into pools of ``batch_size * pool_factor``, each pool sorted by length
    and cut into batches, and the batches shuffled again. Under several processes each rank takes
    every ``num_replicas``-th batch (the list is padded by repetition so that ranks stay in step).
    The order depends only on ``seed`` and the epoch, so a resumed run sees the same batches; its
    data order is ``state_dict()`` (with the position, kept by ``ResumableDataLoader``), and after
    ``load_state_dict`` the next pass over that epoch starts at the first batch not yet trained on.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 pool_factor: int = 50, drop_last: bool = False, num_replicas: int = 1, rank: int = 0):
        self.lengths, self.batch_size, self.shuffle, self.seed = list(lengths), batch_size, shuffle, seed
        self.pool_factor, self.drop_last = pool_factor, drop_last
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches to skip) of the next pass

    @property
    def resuming(self) -> bool:
        return self._resume is not None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        """The data order; the position within the epoch is the training loop's (``ResumableDataLoader``)."""
        return {"epoch": self.epoch, "seed": self.seed, "num_batches": len(self)}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state``'s position: the next pass is over ``state["epoch"]`` without its first
        ``state["batches_done"]`` batches, those already trained on (or over the next epoch, from its
        start, once ``batches_done`` reached ``epoch_batches``)."""
        if state.get("seed") != self.seed or state.get("num_batches") != len(self):
            # Another data order (seed, file, batch size or world size): skipping would skip other rows.
            raise ConfigError(f"cannot resume mid-epoch: the checkpoint's training batches (seed {state.get('seed')}, "
                              f"{state.get('num_batches')} batches) differ from this run's (seed {self.seed}, "
                              f"{len(self)} batches); resume with the same data and batch settings")
        epoch, done = state["epoch"], state["batches_done"]
        if done >= state.get("epoch_batches", float("inf")):
            epoch, done = epoch + 1, 0
        self._resume = (epoch, done)

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
        start = 0
        if self._resume is not None:
            (self.epoch, start), self._resume = self._resume, None
        yield from self._all_batches()[self.rank::self.num_replicas][start:]

    def __len__(self) -> int:
        return len(self._all_batches()[self.rank::self.num_replicas])


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a ``LengthBucketBatchSampler`` whose epoch and position survive a checkpoint.

    ``progress()`` (the DataModule reads the Trainer's loops) gives the epoch, the batches of it the
    training loop has trained on, and the batches it will train on (``limit_train_batches``). Each
    pass starts the sampler on that epoch: Lightning calls ``set_epoch`` only on a loader's sampler
    or its batch sampler's ``sampler``, never on a batch sampler itself. Lightning saves
    ``state_dict()`` of every training loader that has one into the checkpoint and hands it back
    through ``load_state_dict`` before the resumed epoch's first pass. The position comes from the
    loop because the loader cannot count it: Lightning fetches a batch ahead, workers further still.
    """

    def __init__(self, *args, progress: Callable[[], dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = progress

    def __iter__(self):
        if not self.batch_sampler.resuming:
            self.batch_sampler.set_epoch(self.progress()["epoch"])
        return super().__iter__()

    def state_dict(self) -> dict:
        return {**self.batch_sampler.state_dict(), **self.progress()}

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.load_state_dict(state)


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
