"""One DataModule for every model family.

The DataModule owns files, splits and batching; a ``SummaryProcessor`` (built by the model from its
settings and handed to the DataModule: the CLI links ``model.processor`` to ``data.processor``)
decides how an example becomes tokens (a seq2seq source/target pair or a causal prompt + summary).
The DataModule fixes the processor's tag vocabulary from the training file once, before the model
sizes its embeddings, so one ``data:`` block serves KoBART and a QLoRA LLM alike.
"""

from __future__ import annotations

import logging
import random
from typing import Optional

from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import move_data_to_device
import torch
from torch.utils.data import DataLoader

from lightning_summ.data.augment import AugmentedTrainSet, AugmentingBatchSampler, AugmentSettings, training_rows
from lightning_summ.data.batching import (LengthBucketBatchSampler, ResumableDataLoader, SortedBatchSampler,
                                         TokenBudgetBatchSampler, check_last_batch)
from lightning_summ.errors import ConfigError
from lightning_summ.io import DataError, Example, read_examples
from lightning_summ.paths import resolve_path
from lightning_summ.processing import SummaryProcessor

log = logging.getLogger(__name__)


def fold_split(examples: list[Example], fold: int, num_folds: int, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic k-fold split: shuffle positions with ``seed``, deal them round-robin into folds."""
    if num_folds < 2:
        raise ConfigError(f"data.num_folds must be >= 2 (one fold validates, the others train), got {num_folds}")
    if not 0 <= fold < num_folds:
        raise ConfigError(f"data.fold must be in [0, {num_folds - 1}] with data.num_folds {num_folds}, got {fold}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held_out = set(order[fold::num_folds])
    train = [ex for i, ex in enumerate(examples) if i not in held_out]
    val = [ex for i, ex in enumerate(examples) if i in held_out]
    return train, val


class SummarizationDataModule(LightningDataModule):
    """Dialogue-summarization data from CSV or JSONL files (``fname,dialogue,summary[,topic]``;
    multi-reference files use ``summary1``, ``summary2``, ...).

    Args:
        processor: turns examples into features (the model's ``processor``; the CLI passes it).
        train_path: training file (needed by ``fit``; also scanned for ``#Tag#`` tokens; ``predict``,
            ``test`` and ``validate`` with a checkpoint take the tags saved in it when this is not set).
        val_path: validation file; ignored when ``num_folds`` is set (the held-out fold validates).
        test_path: file with references for ``test``.
        predict_path: file to summarise with ``predict`` (summaries, if present, are not used).
        batch_size: training batch size per device.
        eval_batch_size: batch size for validation/test/predict (generation); defaults to ``batch_size``.
        num_workers: DataLoader worker processes.
        pin_memory: collate batches into page-locked memory, so that their copies to the GPU do not
            wait for the GPU's queued work (a copy from ordinary memory synchronizes the stream
            first, which keeps the host from preparing the next step while the GPU runs this one).
            ``null`` (default): on when the trainer runs on CUDA, as HF's ``dataloader_pin_memory``.
        fold: which fold of the training file to hold out for validation (with ``num_folds``).
        num_folds: split the training file into this many folds (k-fold cross-validation).
        seed: seed of the fold split and of the training batch shuffle.
        extra_tags: tags to register as atomic tokens besides the known ones and those found in the data.
        pool_factor: length bucketing pools ``batch_size * pool_factor`` examples before sorting.
        last_batch: the training rows past an epoch's last whole batch of ``batch_size``: ``keep``
            them as a shorter batch (default), ``drop`` them for that epoch, or ``fill`` a whole batch
            with them and rows repeated from the same epoch. The rows dropped or repeated are drawn
            with the epoch's shuffle, so they are other ones each epoch. ``fill`` keeps every training
            batch one size, so CUDA graphs (``model.compile_mode: reduce-overhead``), which record a
            graph for each new batch shape, record fewer. Training batches of ``batch_size`` rows only.
        pad_to_multiple_of: pad each batch's length up to a multiple of this. On a GPU use 64: batches
            then come in a few shapes, so cuDNN attention plans (built per shape, ~0.1 s each) and
            compiled graphs are made once and reused; padding is masked, so results are unchanged.
        max_tokens_per_batch: size training batches by padded tokens instead of rows: as many
            examples as fit ``rows x padded length <= max_tokens_per_batch`` (seq2seq: source +
            target lengths), length-sorted and shuffled per epoch; replaces ``batch_size`` for
            training. A single longer example gets a batch of its own. Every epoch has the same
            number of batches, so the schedule's step count stays exact. ``null`` = ``batch_size`` rows.
        eval_max_tokens_per_batch: the same for validation/test/predict batches (sorted, longest
            first; replaces ``eval_batch_size``); defaults to ``max_tokens_per_batch``. Counts the
            input tokens only: generation adds ``rows x num_beams x max_new_tokens`` on top.
        packing: decoder-only training without padding: each batch's examples are packed into rows
            of up to ``model.max_length`` tokens, position ids restarting per example and no attention
            mask, so that attention stays within each example (transformers builds the block-diagonal
            mask for sdpa/eager/flex attention); the loss is the same mean over the batch's summary
            tokens. Training batches only; refused for seq2seq models.
        augment: train-time augmentation (training rows only, re-drawn every epoch with ``seed``);
            see :class:`~lightning_summ.data.augment.AugmentSettings`. ``null`` (default): none.
    """

    def __init__(
        self,
        processor: Optional[SummaryProcessor] = None,
        train_path: Optional[str] = None,
        val_path: Optional[str] = None,
        test_path: Optional[str] = None,
        predict_path: Optional[str] = None,
        batch_size: int = 16,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 0,
        pin_memory: Optional[bool] = None,
        fold: Optional[int] = None,
        num_folds: Optional[int] = None,
        seed: int = 42,
        extra_tags: Optional[list[str]] = None,
        pool_factor: int = 50,
        last_batch: str = "keep",
        pad_to_multiple_of: int = 1,
        max_tokens_per_batch: Optional[int] = None,
        eval_max_tokens_per_batch: Optional[int] = None,
        packing: bool = False,
        augment: Optional[AugmentSettings] = None,
    ):
        super().__init__()
        if (fold is None) != (num_folds is None):
            raise ConfigError("set both data.fold and data.num_folds, or neither")
        if fold is not None:
            fold_split([], fold, num_folds, seed)  # checks the numbers now, not mid-run
        for name, value, low in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size or 1, 1),
                                 ("num_workers", num_workers, 0), ("pool_factor", pool_factor, 1),
                                 ("pad_to_multiple_of", pad_to_multiple_of, 1),
                                 *((name, value, 1) for name, value in (
                                     ("max_tokens_per_batch", max_tokens_per_batch),
                                     ("eval_max_tokens_per_batch", eval_max_tokens_per_batch)) if value is not None)):
            if value < low:
                raise ConfigError(f"data.{name} must be >= {low}, got {value}")
        if check_last_batch(last_batch) != "keep" and max_tokens_per_batch:
            raise ConfigError(f"data.last_batch {last_batch!r} applies to batches of data.batch_size rows, "
                              "not to data.max_tokens_per_batch: leave it at 'keep'")
        self.processor = processor
        self.train_path, self.val_path = resolve_path(train_path), resolve_path(val_path)
        self.test_path, self.predict_path = resolve_path(test_path), resolve_path(predict_path)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.fold, self.num_folds, self.seed = num_workers, fold, num_folds, seed
        self.pin_memory = pin_memory
        self.extra_tags, self.pool_factor, self.last_batch = list(extra_tags or []), pool_factor, last_batch
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_tokens_per_batch = max_tokens_per_batch
        self.eval_max_tokens_per_batch = max_tokens_per_batch if eval_max_tokens_per_batch is None \
            else eval_max_tokens_per_batch
        self.packing = packing
        self.augment = augment
        self.examples: dict[str, list[Example]] = {}
        self.features: dict[str, list[dict]] = {}
        self._train_position: Optional[dict] = None  # from a checkpoint: where the resumed epoch starts
        self._train_loader: Optional[ResumableDataLoader] = None
        self._checkpoint_tags: list[str] = []  # see use_checkpoint_tags

    # -- the processor's vocabulary --------------------------------------------------------------
    def fit_processor(self) -> SummaryProcessor:
        """Fix the processor's tags: the known ones plus those in the training file (only: validation
        or prediction files must not change the vocabulary a checkpoint was trained with)."""
        if self.processor is None:
            raise ConfigError("the DataModule has no processor: pass processor=model.processor "
                              "(the command line links it)")
        texts, extra = (), [*self.extra_tags, *self._checkpoint_tags]
        if self.train_path:  # the whole file, not a fold's part: every fold model gets one vocabulary
            texts = (t for ex in self._train_file() for t in (ex.dialogue, *ex.summaries))
            extra = self.extra_tags  # the training file decides; a checkpoint is verified against it
        self.processor.fit_tags(texts, extra)
        return self.processor

    def use_checkpoint_tags(self, tags: Optional[list[str]]) -> None:
        """The tags of the checkpoint a run starts from (its saved processor state): without a
        training file they are the vocabulary, so ``predict``/``test`` with ``--ckpt_path`` need no
        ``data.train_path``; with one, the training file's tags are used and the checkpoint verified."""
        self._checkpoint_tags = list(tags or [])

    def _train_file(self) -> list[Example]:
        """The whole training file, read once (tags, folds and the train split all use it)."""
        if "train_file" not in self.examples:
            self.examples["train_file"] = read_examples(self.train_path, require_summary=True)
        return self.examples["train_file"]

    # -- reading --------------------------------------------------------------------------------
    def _read(self, split: str) -> list[Example]:
        if split in self.examples:
            return self.examples[split]
        if split in ("train", "val") and self.num_folds is not None:
            if not self.train_path:
                raise DataError("data.num_folds is set but data.train_path is not")
            if self.val_path:
                log.warning("data.fold is set: validating on fold %s of %s; data.val_path (%s) is not used",
                            self.fold, self.train_path, self.val_path)
            train, val = fold_split(self._train_file(), self.fold, self.num_folds, self.seed)
            self.examples.update(train=train, val=val)
            return self.examples[split]
        path = {"train": self.train_path, "val": self.val_path, "test": self.test_path,
                "predict": self.predict_path}[split]
        if not path:
            raise DataError(f"data.{split}_path is not set, but the '{split}' stage needs it")
        self.examples[split] = self._train_file() if split == "train" else \
            read_examples(path, require_summary=split in ("val", "test"))
        return self.examples[split]

    def _encode(self, split: str) -> list[dict]:
        if split not in self.features:
            self.features[split] = self.processor.features(self._read(split), split)
        return self.features[split]

    def setup(self, stage: str) -> None:
        self.fit_processor()
        if stage == "fit":
            self._train_collator()  # data.packing with a seq2seq model fails here, before any training
        splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["predict"]}[stage]
        for split in splits:
            if split == "train" and self.augment is not None:
                self._read(split)  # the augmented training set encodes its own rows (train_dataloader)
            else:
                self._encode(split)

    # -- loaders --------------------------------------------------------------------------------
    def _pinned(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _replicas(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _sequence_lengths(self, feats: list[dict]) -> list[tuple[int, ...]]:
        return [self.processor.sequence_lengths(f) for f in feats]

    def train_dataloader(self) -> DataLoader:
        world, rank = self._replicas()
        if self.augment is not None and self.max_tokens_per_batch:
            raise ConfigError("data.augment with data.max_tokens_per_batch is not supported yet: use data.batch_size")
        feats = self._encode("train") if self.augment is None else None
        if self.max_tokens_per_batch:
            sampler = TokenBudgetBatchSampler(self._sequence_lengths(feats), self.max_tokens_per_batch, shuffle=True,
                                              seed=self.seed, multiple=self.pad_to_multiple_of,
                                              num_replicas=world, rank=rank)
        elif self.augment is not None:  # the sampler's set_epoch re-draws the augmented rows every epoch
            feats = AugmentedTrainSet(training_rows(self._read("train")),
                                      lambda rows: self.processor.features(rows, "train"), self.augment, self.seed)
            sampler = AugmentingBatchSampler(feats, lambda lengths: self._length_buckets(lengths, world, rank))
        else:
            sampler = self._length_buckets([len(f["input_ids"]) for f in feats], world, rank)
        loader = ResumableDataLoader(feats, batch_sampler=sampler, collate_fn=self._train_collator(),
                                     num_workers=self.num_workers, pin_memory=self._pinned(),
                                     generator=self._loader_generator(), progress=self._training_progress)
        if self._train_position is not None:  # once: the next loaders start their epochs from the beginning
            loader.load_state_dict(self._train_position)
            self._train_position = None
        self._train_loader = loader
        return loader

    def _length_buckets(self, lengths: list[int], world: int, rank: int) -> LengthBucketBatchSampler:
        return LengthBucketBatchSampler(lengths, self.batch_size, shuffle=True, seed=self.seed,
                                        pool_factor=self.pool_factor, last_batch=self.last_batch,
                                        num_replicas=world, rank=rank)

    def _train_collator(self):
        if self.packing:
            return self.processor.packing_collator(self.pad_to_multiple_of)
        return self.processor.collator(for_generation=False, pad_to_multiple_of=self.pad_to_multiple_of)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Move only a batch's model inputs (as Lightning does: non-blocking from pinned memory); its
        metadata (file names, references, dialogues, the row ``index``) stays on the host. Lightning's
        default walks every element of the metadata lists on the training loop's thread (2.8 ms per
        step on a 2-core CPU: ``bench/NOTES.md``, sixth round, against a compiled KoBART step's ~30 ms
        of host time), and an ``index`` on the GPU costs a synchronization at every read of it
        (``predict_step`` reads it row by row)."""
        inputs = {key: value for key, value in batch.items() if isinstance(value, torch.Tensor) and key != "index"}
        return {**batch, **move_data_to_device(inputs, device)}

    # -- resuming ---------------------------------------------------------------------------------
    # The training loader's position is saved here too, not only by Lightning's stateful-loader hook:
    # a model whose schedule needs the number of steps makes Lightning build the loader while setting
    # up the optimizers, before it restores the loops, and that hook then never reaches the loader.
    # The DataModule's state is restored earlier, before any loader exists.
    def state_dict(self) -> dict:
        loader = getattr(self, "_train_loader", None)
        return {"train_position": loader.state_dict()} if loader is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._train_position = state_dict.get("train_position")

    def _training_progress(self) -> dict:
        """Where training is: its epoch, the batches of it trained on so far and in all (the loader's
        epoch and resume position)."""
        trainer = getattr(self, "trainer", None)
        if getattr(trainer, "fit_loop", None) is None:  # a loader used outside a Trainer's fit
            return {"epoch": 0, "batches_done": 0, "epoch_batches": float("inf")}
        # The batch progress belongs to the epoch started last; ``current_epoch`` already counts on once
        # that epoch has ended (a checkpoint at the end of training or of an epoch).
        epoch = max(trainer.fit_loop.epoch_progress.current.started - 1, 0)
        return {"epoch": epoch, "epoch_batches": trainer.num_training_batches,
                "batches_done": trainer.fit_loop.epoch_loop.batch_progress.current.processed}

    def _loader_generator(self) -> torch.Generator:
        # A DataLoader draws its workers' base seed from this generator each time it is iterated; by
        # default that is torch's global generator, which dropout uses too. With a generator of its
        # own, starting an epoch or a validation does not move the training randomness, so a run
        # resumed at any step (whose global RNG state the checkpoint restores) draws the same dropout.
        return torch.Generator().manual_seed(self.seed)

    def _eval_loader(self, split: str) -> DataLoader:
        feats = self._encode(split)
        world, rank = self._replicas()
        if self.eval_max_tokens_per_batch:
            batches = TokenBudgetBatchSampler(self._sequence_lengths(feats), self.eval_max_tokens_per_batch,
                                              shuffle=False, multiple=self.pad_to_multiple_of,
                                              num_replicas=world, rank=rank)
        else:
            batches = SortedBatchSampler([len(f["input_ids"]) for f in feats], self.eval_batch_size, world, rank)
        collate = self.processor.collator(for_generation=True, pad_to_multiple_of=self.pad_to_multiple_of)
        return DataLoader(feats, batch_sampler=batches, collate_fn=collate, num_workers=self.num_workers,
                          pin_memory=self._pinned(), generator=self._loader_generator())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict")
