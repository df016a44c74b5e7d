"""The default progress bar reads the logged metrics (a wait for the GPU) at most twice a second
within an epoch, and always at its end."""

from __future__ import annotations

import inspect

import pytest
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

from lightning_summ.callbacks import progress
from lightning_summ.callbacks.progress import ThrottledProgressBar, ThrottledRichProgressBar
from lightning_summ.commands.lightning import SummarizationTrainer


def test_tqdm_redraws_are_throttled_by_time_and_the_last_batch_always_draws(monkeypatch):
    clock = iter([0.0, 0.1, 0.2, 0.6, 0.7, 0.8])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = ThrottledProgressBar(min_interval_s=0.5)
    drawn = [n for n in range(1, 7) if bar._should_update(n, 6)]
    assert drawn == [1, 4, 6]  # t=0.0, t=0.6 (0.5 s after 0.0), and the last batch at t=0.8


def test_rich_reads_metrics_per_batch_throttled_and_at_epoch_end_always(monkeypatch):
    clock = iter([0.0, 0.1, 0.6, 0.7, 0.8])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    reads = []
    monkeypatch.setattr(RichProgressBar, "_update_metrics", lambda self, trainer, module: reads.append(len(reads)))
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end",
                        lambda self, trainer, module, *a: self._update_metrics(trainer, module))
    bar = ThrottledRichProgressBar(min_interval_s=0.5)
    for _ in range(4):  # batch ends at t = 0.0, 0.1, 0.6, 0.7
        bar.on_train_batch_end(None, None, None, None, 0)
    assert len(reads) == 2  # at 0.0 and 0.6
    bar._update_metrics(None, None)  # an epoch end (t = 0.8, 0.1 s after the last read): always
    assert len(reads) == 3


def test_lightnings_bars_still_use_the_hooks_these_bars_override():
    for hook in (TQDMProgressBar.on_train_batch_end, TQDMProgressBar.on_validation_batch_end):
        assert "self._should_update(" in inspect.getsource(hook)
    for hook in (RichProgressBar.on_train_batch_end, RichProgressBar.on_train_epoch_end):
        assert "self._update_metrics(" in inspect.getsource(hook)


def test_a_disabled_bar_never_draws():
    bar = ThrottledProgressBar()
    bar.disable()
    assert not bar._should_update(1, 1)


@pytest.mark.parametrize("rich", [True, False])
def test_the_default_bar_is_the_throttled_form_of_lightnings_choice(monkeypatch, rich):
    monkeypatch.setattr(progress, "_RICH_AVAILABLE", rich)
    assert type(progress.default_progress_bar()) is (ThrottledRichProgressBar if rich else ThrottledProgressBar)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, ThrottledRichProgressBar), ({"enable_progress_bar": False}, None),
    ({"callbacks": [TQDMProgressBar(refresh_rate=7)]}, TQDMProgressBar)])
def test_the_trainer_uses_the_throttled_bar_unless_told_otherwise(tmp_path, kwargs, expected):
    trainer = SummarizationTrainer(accelerator="cpu", logger=False, default_root_dir=tmp_path, **kwargs)
    bars = [c for c in trainer.callbacks if isinstance(c, (TQDMProgressBar, RichProgressBar))]
    assert [type(b) for b in bars] == ([expected] if expected else [])
    if "callbacks" in kwargs:
        assert bars[0].refresh_rate == 7


@pytest.mark.parametrize("bar_class", [ThrottledProgressBar, ThrottledRichProgressBar])
def test_training_logs_no_value_that_lightning_reads_after_every_batch_and_the_bar_still_shows_the_loss(
        tmp_path, monkeypatch, bar_class):
    """Lightning turns prog_bar values into numbers after every batch (on CUDA a wait for the GPU
    per step); the loss reaches the bar through its redraws instead."""
    import torch
    from lightning.pytorch.trainer.connectors.logger_connector import result

    from lightning_summ.data.datamodule import SummarizationDataModule
    from tests.models.test_seq2seq import tiny_model

    converted = []
    real = result.convert_tensors_to_scalars
    monkeypatch.setattr(result, "convert_tensors_to_scalars", lambda value: converted.append(1) or real(value))
    model = tiny_model()
    dm = SummarizationDataModule(model.processor, train_path="pkg://sample_data/train.csv",
                                 val_path="pkg://sample_data/dev.csv", batch_size=4)
    bar = bar_class(min_interval_s=0.0, show="train/loss")  # one name, as a string too
    trainer = SummarizationTrainer(accelerator="cpu", max_steps=6, limit_val_batches=0, logger=False,
                                   enable_checkpointing=False, enable_model_summary=False, callbacks=[bar],
                                   default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 6 and converted == []  # with prog_bar=True: once per batch
    shown = bar.get_metrics(trainer, model)["train/loss"]
    assert isinstance(shown, float) and shown == trainer.callback_metrics["train/loss"].item() and torch.isfinite(
        torch.tensor(shown))
