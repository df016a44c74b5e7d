"""Batch samplers: which examples go into each batch, in which order.

Training batches group dialogues of similar length (less padding, same randomness across epochs
through a seeded shuffle); generation batches are sorted by length, longest first, so that an
out-of-memory error shows at once rather than at the end. Every feature carries its row ``index``,
so outputs are put back in input order afterwards, whatever order the batches ran in.
"""

from __future__ import annotations

import random
from itertools import cycle, islice
from typing import Callable, Sequence

from torch.utils.data import DataLoader, Sampler

from lightning_summ.errors import ConfigError

# What becomes of the rows past an epoch's last whole batch (``data.last_batch``): kept, as a short
# batch (every row once per epoch, one more batch shape); dropped for that epoch; or filled up to a
# whole batch with rows repeated from the same epoch (every batch one size: CUDA graphs record a
# graph per batch shape, ``model.compile_mode``). With the shuffle, the rows dropped or repeated
# are other ones each epoch.
LAST_BATCH = ("keep", "fill", "drop")


def check_last_batch(value: str) -> str:
    if value not in LAST_BATCH:
        raise ConfigError(f"data.last_batch must be one of {', '.join(LAST_BATCH)}, got {value!r}")
    return value


class EpochBatchSampler(Sampler[list[int]]):
    """Training batches whose order depends only on ``seed`` and the epoch (subclasses say how,
    in ``_all_batches``), sharded over ``num_replicas`` ranks, and resumable mid-epoch: the data
    order is ``state_dict()`` (with the position, kept by ``ResumableDataLoader``), and after
    ``load_state_dict`` the next pass over that epoch starts at the first batch not yet trained on.
    """

    def __init__(self, seed: int, num_replicas: int, rank: int):
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches to skip) of the next pass

    def _all_batches(self) -> list[list[int]]:
        raise NotImplementedError

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

    def _sharded(self, batches: list[list[int]]) -> list[list[int]]:
        """Padded by repetition so that every rank has as many batches; this rank's share."""
        if self.num_replicas > 1 and batches:
            batches = batches + batches[: (-len(batches)) % self.num_replicas]
        return batches[self.rank::self.num_replicas]

    def __iter__(self):
        start = 0
        if self._resume is not None:
            (self.epoch, start), self._resume = self._resume, None
        yield from self._sharded(self._all_batches())[start:]

    def __len__(self) -> int:
        return len(self._sharded(self._all_batches()))


class LengthBucketBatchSampler(EpochBatchSampler):
    """Shuffled batches of similar-length examples.

    Indices are shuffled, cut into pools of ``batch_size * pool_factor``, each pool sorted by length
    and cut into batches, and the batches shuffled again. Under several processes each rank takes
    every ``num_replicas``-th batch (the list is padded by repetition so that ranks stay in step).
    The epoch's last batch may be short; ``last_batch`` says what happens to it (``LAST_BATCH``).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 pool_factor: int = 50, last_batch: str = "keep", num_replicas: int = 1, rank: int = 0):
        super().__init__(seed, num_replicas, rank)
        self.lengths, self.batch_size, self.shuffle = list(lengths), batch_size, shuffle
        self.pool_factor, self.last_batch = pool_factor, check_last_batch(last_batch)
        if last_batch == "drop" and len(self.lengths) < batch_size:
            raise ConfigError(f"data.last_batch drop leaves no training batch: {len(self.lengths)} training rows "
                              f"< data.batch_size {batch_size}")

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        order = self._whole_batches(order)
        pool = self.batch_size * self.pool_factor
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=lambda i: self.lengths[i], reverse=True)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def _whole_batches(self, order: list[int]) -> list[int]:
        """This epoch's order cut or grown to whole batches (``last_batch``), before pooling, so that the
        rows left out (drop) or repeated (fill: the first of the order, again after its end) are
        drawn with the shuffle, other ones each epoch, not always a pool's shortest."""
        extra = len(order) % self.batch_size
        if not extra or self.last_batch == "keep":
            return order
        if self.last_batch == "drop":
            return order[:len(order) - extra]
        return order + list(islice(cycle(order), self.batch_size - extra))


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over an ``EpochBatchSampler`` whose epoch and position survive a checkpoint.

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


class TokenBudgetBatchSampler(EpochBatchSampler):
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
        super().__init__(seed, num_replicas, rank)
        self.lengths = [tuple(length) for length in lengths]
        self.max_tokens, self.shuffle, self.multiple = max_tokens, shuffle, multiple
        self._cached: tuple[int, list[list[int]]] | None = None

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
        self._cached = (self.epoch, batches)
        return batches
