"""GenerationCheckpoint / GenerationEarlyStopping act only on validations that computed the monitored
metric: any generate_every_n_epochs works with their default cadence, the best checkpoint comes from an
epoch that generated, and patience counts generating epochs (not stale values Lightning keeps)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import QUICKSTART
from lightning_summ.callbacks.checkpoint import GenerationCheckpoint, GenerationEarlyStopping


class EveryNthEpochScore(BoringModel):
    """Logs ``val/score`` only on every ``n``-th epoch, like ``val/rouge_mean`` with generate_every_n_epochs."""

    def __init__(self, n: int, scores: list[float]):
        super().__init__()
        self.n, self.scores, self.logged_at = n, list(scores), []

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking and (self.current_epoch + 1) % self.n == 0:
            self.log("val/score", self.scores.pop(0))
            self.logged_at.append(self.current_epoch)


def _trainer(tmp_path: Path, epochs: int, *callbacks) -> Trainer:
    return Trainer(max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=1,
                   logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                   callbacks=list(callbacks))


def test_lightning_checkpoint_fails_when_the_metric_skips_epochs(tmp_path):
    """The defect: every_n_epochs must match the generation cadence by hand."""
    stock = ModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="max")
    with pytest.raises(MisconfigurationException, match="could not find the monitored key"):
        _trainer(tmp_path, 4, stock).fit(EveryNthEpochScore(2, [0.1, 0.2]))


@pytest.mark.parametrize("n, scores, best_epoch",
                         [(2, [0.3, 0.7, 0.5], 3), (3, [0.6, 0.2], 2), (1, [0.1, 0.9, 0.4], 1)])
def test_checkpoints_only_epochs_that_computed_the_metric(tmp_path, n, scores, best_epoch):
    model = EveryNthEpochScore(n, scores)
    every = GenerationCheckpoint(dirpath=tmp_path / "all", monitor="val/score", mode="max", save_top_k=-1,
                                 filename="{epoch}")
    _trainer(tmp_path, n * len(scores), every).fit(model)
    assert model.logged_at == [n * (i + 1) - 1 for i in range(len(scores))]
    # One checkpoint per epoch that computed the score, each ranked with its own score.
    assert sorted(Path(p).name for p in every.best_k_models) == sorted(f"epoch={e}.ckpt" for e in model.logged_at)
    assert {Path(p).name: round(float(v), 6) for p, v in every.best_k_models.items()} == \
        {f"epoch={e}.ckpt": s for e, s in zip(model.logged_at, scores)}
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(f"epoch={e}.ckpt" for e in model.logged_at)
    assert Path(every.best_model_path).name == f"epoch={best_epoch}.ckpt"
    assert float(every.best_model_score) == pytest.approx(max(scores))


def test_early_stopping_patience_counts_only_generating_epochs(tmp_path):
    # Scores on epochs 1, 3, 5, 7: best at epoch 1, then no improvement. patience 2 -> stop after epoch 5.
    # (Lightning's EarlyStopping would also count the stale 0.5 seen on epochs 2 and 4 and stop at epoch 3.)
    model = EveryNthEpochScore(2, [0.5, 0.4, 0.3, 0.2])
    stopper = GenerationEarlyStopping(monitor="val/score", mode="max", patience=2)
    trainer = _trainer(tmp_path, 8, stopper, GenerationCheckpoint(dirpath=tmp_path, monitor="val/score", mode="max"))
    trainer.fit(model)
    assert model.logged_at == [1, 3, 5]
    assert stopper.stopped_epoch == 5 and stopper.wait_count == 2
    assert float(stopper.best_score) == pytest.approx(0.5)


def test_never_logged_metric_is_reported(tmp_path):
    cb = GenerationCheckpoint(dirpath=tmp_path, monitor="val/typo", mode="max")
    with pytest.warns(UserWarning, match="'val/typo' was never logged"):
        _trainer(tmp_path, 2, cb).fit(EveryNthEpochScore(1, [0.1, 0.2]))
    assert not list(tmp_path.glob("*.ckpt"))


# -- the shipped quickstart through the CLI ---------------------------------------------------------

def _rouge_per_generating_epoch(log_dir: Path) -> list[float]:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0}).Reload()
    return [e.value for e in events.Scalars("val/rouge_mean")]


@pytest.mark.parametrize("n", [2, 3])
def test_quickstart_checkpoint_and_early_stopping_follow_the_generation_cadence(cli_run, tmp_path, monkeypatch, n):
    monkeypatch.setattr(sys, "argv", ["lightning_summ"])  # pytest's own arguments are not the CLI's
    # The shipped callbacks plus early stopping, as a second --config (a list option is replaced whole).
    callbacks = yaml.safe_load(QUICKSTART.read_text())["trainer"]["callbacks"]
    callbacks.append({"class_path": "lightning_summ.callbacks.checkpoint.GenerationEarlyStopping",
                      "init_args": {"monitor": "val/rouge_mean", "mode": "max", "patience": 5}})
    extra = tmp_path / "early_stopping.yaml"
    extra.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    cli = cli_run("fit", "--config", str(extra), "--trainer.max_epochs=4", "--trainer.limit_train_batches=2",
                  "--trainer.limit_val_batches=1",
                  f"--model.init_args.evaluation.generate_every_n_epochs={n}",
                  "--model.init_args.evaluation.generate_limit=8")
    trainer = cli.trainer
    checkpoint = trainer.checkpoint_callback
    assert isinstance(checkpoint, GenerationCheckpoint) and checkpoint._every_n_epochs == 1  # the default cadence
    generating = [e for e in range(4) if (e + 1) % n == 0]
    scores = _rouge_per_generating_epoch(Path(trainer.log_dir))
    assert len(scores) == len(generating)

    best_epoch = generating[scores.index(max(scores))]  # the first maximum: a tie does not replace the best
    assert Path(checkpoint.best_model_path).name.startswith(f"best-epoch={best_epoch}-")
    assert float(checkpoint.best_model_score) == pytest.approx(max(scores), abs=1e-4)
    # Beside the best, only ResumeCheckpoint's last.ckpt (for --ckpt_path last).
    assert sorted(p.name for p in Path(checkpoint.dirpath).iterdir()) == [Path(checkpoint.best_model_path).name,
                                                                          "last.ckpt"]
    saved = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
    assert saved["epoch"] == best_epoch

    stopper = next(cb for cb in trainer.callbacks if isinstance(cb, GenerationEarlyStopping))
    # Patience counts the generating epochs after the (first) best one; stale values would add epochs 2 and 3.
    assert stopper.wait_count == len(scores) - 1 - scores.index(max(scores))
    assert stopper.stopped_epoch == 0 and trainer.current_epoch == 4


@pytest.mark.parametrize("batches", [3, 4])
def test_last_ckpt_holds_the_final_step_whatever_the_cadence(tmp_path, batches):
    """ResumeCheckpoint writes last.ckpt every 2 steps and at the end of training: a run of 3 steps
    ended with the step-2 checkpoint (Lightning's save at train end skips once any last was saved)."""
    from lightning_summ.callbacks.checkpoint import ResumeCheckpoint

    trainer = Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=batches, limit_val_batches=0,
                      logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[ResumeCheckpoint(every_n_train_steps=2, dirpath=str(tmp_path / "ckpt"))])
    trainer.fit(BoringModel())
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == batches == trainer.global_step
