"""Progress bars that do not synchronize the GPU at every batch.

Turning a CUDA tensor such as the step's loss into a number waits for the GPU. A value logged with
``self.log(..., prog_bar=True)`` is turned into a number by Lightning's logging after **every**
training batch, whatever the bar (measured on an H100, KoBART with CUDA-graphed blocks: that
``.item()`` was 8.9 of a step's ~28 ms under cProfile, ``bench/NOTES.md``): the host could not queue
step n+1 while the GPU runs step n, so every step cost its host time plus its GPU time. So the
training loss is logged without ``prog_bar``, and these bars read the values named in ``show`` from
the callback metrics (tensors, not yet numbers) when they redraw: at most every ``min_interval_s``
seconds during an epoch, and always at its end. ``default_progress_bar`` picks the one Lightning
would have picked (rich where it is installed, else tqdm).
"""

from __future__ import annotations

import time
from typing import Sequence

import torch
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE


class _Interval:
    """True at most once every ``seconds`` (and whenever ``force``)."""

    def __init__(self, seconds: float):
        self.seconds, self._last = seconds, float("-inf")

    def due(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self._last >= self.seconds:
            self._last = now
            return True
        return False


def _names(show: Sequence[str]) -> tuple[str, ...]:
    return (show,) if isinstance(show, str) else tuple(show)  # one name, not its characters


class _ShowsLoggedValues:
    """A bar's metrics plus the logged values named in ``self.show``, read only when the bar asks."""

    show: tuple[str, ...] = ()

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        logged = trainer.callback_metrics
        for name in self.show:
            value = logged.get(name)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                items[name] = value.item()  # the one synchronization of a redraw
        return items


class ThrottledProgressBar(_ShowsLoggedValues, TQDMProgressBar):
    """Lightning's ``TQDMProgressBar``, redrawn at most every ``min_interval_s`` seconds (and at the
    last batch of each loop).

    Args:
        min_interval_s: least time between two redraws (each reads the metrics: one synchronization).
        show: logged values shown beside the bar's own metrics, read at each redraw.
    """

    def __init__(self, min_interval_s: float = 0.5, show: Sequence[str] = ("train/loss",), **kwargs):
        super().__init__(**kwargs)
        self.min_interval_s, self._interval, self.show = min_interval_s, _Interval(min_interval_s), _names(show)

    # Lightning's tqdm bar asks this private hook before every redraw (Lightning 2.6; a test pins its use).
    def _should_update(self, current: int, total) -> bool:
        return super()._should_update(current, total) and self._interval.due(force=current == total)


class ThrottledRichProgressBar(_ShowsLoggedValues, RichProgressBar):
    """Lightning's ``RichProgressBar`` (the bar itself moves every batch, which reads nothing), with
    the metrics read at most every ``min_interval_s`` seconds within an epoch and always at its end.

    Args:
        min_interval_s: least time between two reads of the metrics (each one synchronization).
        show: logged values shown beside the bar's own metrics, read at each redraw.
    """

    def __init__(self, min_interval_s: float = 0.5, show: Sequence[str] = ("train/loss",), **kwargs):
        super().__init__(**kwargs)
        self.min_interval_s, self._interval, self.show = min_interval_s, _Interval(min_interval_s), _names(show)
        self._within_batch = False

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self._within_batch = True  # the metrics update below is the per-batch one: throttle it
        try:
            super().on_train_batch_end(*args, **kwargs)
        finally:
            self._within_batch = False

    # Lightning's rich bar reads the metrics in this private hook (Lightning 2.6; a test pins its use).
    def _update_metrics(self, trainer, pl_module) -> None:
        if self._interval.due(force=not self._within_batch):
            super()._update_metrics(trainer, pl_module)


def default_progress_bar() -> ProgressBar:
    """The throttled form of the bar Lightning would choose: rich where rich is installed, else tqdm."""
    return ThrottledRichProgressBar() if _RICH_AVAILABLE else ThrottledProgressBar()
