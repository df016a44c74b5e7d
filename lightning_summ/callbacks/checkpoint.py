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

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn


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
