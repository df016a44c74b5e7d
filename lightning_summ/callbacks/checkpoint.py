"""Checkpointing and early stopping on a metric that only some validations compute.

``val/rouge_mean`` exists only on the epochs that generate (``evaluation.generate_every_n_epochs``).
Lightning's ``ModelCheckpoint`` and ``EarlyStopping`` look at ``trainer.callback_metrics`` after
every validation, which leaves two ways to go wrong: on an epoch that did not generate the metric is
missing (``ModelCheckpoint`` raises "could not find the monitored key", strict ``EarlyStopping``
raises too), or, once one epoch has generated, Lightning keeps that value in ``callback_metrics``
and the callbacks see it again on later epochs: a checkpoint of epoch 3 could be ranked with epoch
2's score, and patience would run out on epochs that scored nothing. Matching
``ModelCheckpoint(every_n_epochs)`` to the generation cadence by hand avoided both, until one of
the two numbers changed.

The two callbacks here act only on validations that computed the monitored metric: before every
validation (and training epoch) they drop the metric's previous value from ``callback_metrics``, so
that a value present afterwards is one this validation logged, and they skip the others. Any
``generate_every_n_epochs`` then works with their default cadence; ``EarlyStopping``'s
``patience`` counts generating epochs. In a config:

    trainer:
      callbacks:
        - class_path: lightning_summ.callbacks.checkpoint.GenerationCheckpoint
          init_args: {monitor: val/rouge_mean, mode: max, save_top_k: 1}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from lightning_summ.errors import ConfigError


class _OnlyWhenComputed:
    """Hooks shared by both callbacks (mixed in before the Lightning class; ``monitor`` is its option)."""

    monitor: str | None
    _seen_monitor = False

    def _forget_previous_value(self, trainer) -> None:
        # ``trainer.callback_metrics`` is the logger connector's own dict, which Lightning only ever
        # updates (and clears at fit start): popping the key is what makes "present" mean "logged now".
        if self.monitor is not None:
            trainer.callback_metrics.pop(self.monitor, None)

    def _computed_now(self, trainer) -> bool:
        computed = self.monitor is None or self.monitor in trainer.callback_metrics
        self._seen_monitor = self._seen_monitor or computed
        return computed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._forget_previous_value(trainer)
        super().on_train_epoch_start(trainer, pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._forget_previous_value(trainer)
        super().on_validation_start(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self._computed_now(trainer):
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._computed_now(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if not self._seen_monitor and not trainer.fast_dev_run:
            rank_zero_warn(f"{type(self).__name__}: {self.monitor!r} was never logged in this fit, so it never "
                           f"acted; logged metrics: {', '.join(sorted(trainer.callback_metrics)) or 'none'}")


class GenerationCheckpoint(_OnlyWhenComputed, ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same options) that considers only the validations which computed
    ``monitor``, e.g. ``val/rouge_mean`` on the epochs that generate. Leave ``every_n_epochs`` unset:
    the generation cadence (``evaluation.generate_every_n_epochs``) already decides; ``last`` is saved
    when a checkpoint is, as in Lightning."""


class GenerationEarlyStopping(_OnlyWhenComputed, EarlyStopping):
    """Lightning's ``EarlyStopping`` (same options) that counts only the validations which computed
    ``monitor``: ``patience: 3`` with ``generate_every_n_epochs: 2`` stops after 3 generating epochs
    (6 epochs) without improvement."""


class ResumeCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` (into the run's ``checkpoints/``), from which ``fit --ckpt_path last``
    continues a crashed fit exactly, every ``every_n_train_steps`` optimizer steps and when training
    ends. It keeps no "best" (``GenerationCheckpoint`` does). A checkpoint holds the weights
    (only the adapter for LoRA/QLoRA models), optimizer and schedule, the loops' progress, every
    callback's state, the training loader's position within the epoch and, through this callback,
    the random number generators of Python, NumPy and torch (CPU and CUDA), restored just before
    the first resumed training step.

    Args:
        every_n_train_steps: optimizer steps between two ``last.ckpt`` writes (each replaces the
            previous one, atomically). A crash loses at most this many steps.
        dirpath: directory of ``last.ckpt``; by default the run's ``checkpoints/`` (keep it so:
            ``--ckpt_path last`` looks there).
    """

    def __init__(self, every_n_train_steps: int = 50, dirpath: Optional[str] = None):
        if every_n_train_steps < 1:
            raise ConfigError(f"ResumeCheckpoint every_n_train_steps must be >= 1, got {every_n_train_steps}")
        super().__init__(dirpath=dirpath, monitor=None, save_top_k=0, save_last=True,
                         every_n_train_steps=every_n_train_steps)
        self._rng_to_restore: Optional[dict[str, Any]] = None

    def state_dict(self) -> dict[str, Any]:
        # Called while the checkpoint is assembled, i.e. after the step it follows: the state the next
        # training step starts from (the loaders draw from generators of their own, not these).
        return {**super().state_dict(), "rng_states": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self._rng_to_restore = state_dict.pop("rng_states", None)
        super().load_state_dict(state_dict)

    def on_train_end(self, trainer, pl_module) -> None:
        # Lightning writes last.ckpt at train end only if no last.ckpt was written in this run at
        # all: after a write at step 2 of a 3-step run, last.ckpt would stay at step 2.
        if trainer.global_step != self._last_global_step_saved:
            self._last_checkpoint_saved = ""
        super().on_train_end(trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Not at load time: the sanity check and a sampling validation between loading and this step
        # may draw random numbers that the uninterrupted run never drew at this point.
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None


def rng_states() -> dict[str, Any]:
    """Lightning's collection of the generators' states, with NumPy's (a tuple holding an array)
    made of tensors and numbers: Lightning loads checkpoints with ``weights_only=True``."""
    states = _collect_rng_states(include_cuda=torch.cuda.is_available())
    if "numpy" in states:
        name, keys, pos, has_gauss, cached = states["numpy"]
        states["numpy"] = {"name": name, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                           "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    states = dict(states)
    if isinstance(states.get("numpy"), dict):
        import numpy as np

        n = states["numpy"]
        states["numpy"] = (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                           n["cached_gaussian"])
    _set_rng_states(states)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on local disks: the file is written beside its
    target, flushed to disk and renamed over it, so a crash mid-write leaves the previous checkpoint
    intact. (Lightning's own writer stages local files in the system temp directory and *moves* them,
    which is a copy, not a rename, whenever that directory is on another file system.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if "://" in str(path):  # remote storage: its own transaction semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with open(partial, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def best_checkpoint_callback(trainer) -> Optional[ModelCheckpoint]:
    """The checkpoint callback that keeps the best model: the first ``ModelCheckpoint`` that is not a
    ``ResumeCheckpoint`` (whose ``last.ckpt`` is for resuming, not a "best")."""
    return next((cb for cb in trainer.checkpoint_callbacks if not isinstance(cb, ResumeCheckpoint)), None)
