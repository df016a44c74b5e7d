"""The default progress bar redraws (and so reads the loss from the device) at most twice a second."""

from __future__ import annotations

import pytest
from lightning.pytorch.callbacks import TQDMProgressBar

from lightning_summ.callbacks import progress
from lightning_summ.callbacks.progress import ThrottledProgressBar
from lightning_summ.commands.lightning import SummarizationTrainer


def test_redraws_are_throttled_by_time_and_the_last_batch_always_draws(monkeypatch):
    clock = iter([0.0, 0.1, 0.2, 0.6, 0.7, 0.8])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = ThrottledProgressBar(min_interval_s=0.5)
    drawn = [n for n in range(1, 7) if bar._should_update(n, 6)]
    assert drawn == [1, 4, 6]  # t=0.0, t=0.6 (0.5 s after 0.0), and the last batch at t=0.8


def test_lightnings_bar_still_asks_the_hook_this_bar_overrides():
    import inspect

    for hook in (TQDMProgressBar.on_train_batch_end, TQDMProgressBar.on_validation_batch_end):
        assert "self._should_update(" in inspect.getsource(hook)


def test_a_disabled_bar_never_draws():
    bar = ThrottledProgressBar()
    bar.disable()
    assert not bar._should_update(1, 1)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, ThrottledProgressBar), ({"enable_progress_bar": False}, None),
    ({"callbacks": [TQDMProgressBar(refresh_rate=7)]}, TQDMProgressBar)])
def test_the_trainer_uses_the_throttled_bar_unless_told_otherwise(tmp_path, kwargs, expected):
    trainer = SummarizationTrainer(accelerator="cpu", logger=False, default_root_dir=tmp_path, **kwargs)
    bars = [c for c in trainer.callbacks if isinstance(c, TQDMProgressBar)]
    assert [type(b) for b in bars] == ([expected] if expected else [])
    if "callbacks" in kwargs:
        assert bars[0].refresh_rate == 7
