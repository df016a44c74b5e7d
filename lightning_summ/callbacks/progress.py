"""Progress bars that do not synchronize the GPU at every batch.

Each redraw of a Lightning bar's metrics (``train/loss``) turns CUDA tensors into numbers, which waits
for the GPU. Lightning's default bars (``RichProgressBar`` where rich is installed, else
``TQDMProgressBar``) do it after every training batch, so a run would synchronize once per step:
the host could not queue step n+1 while the GPU runs step n, and every step would cost its host
time plus its GPU time. These bars read the metrics at most every ``min_interval_s`` seconds during
an epoch, and always at its end; ``default_progress_bar`` picks the one Lightning would have picked.
"""

from __future__ import annotations

import time

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


class ThrottledProgressBar(TQDMProgressBar):
    """Lightning's ``TQDMProgressBar``, redrawn at most every ``min_interval_s`` seconds (and at the
    last batch of each loop).

    Args:
        min_interval_s: least time between two redraws (each reads the metrics: one synchronization).
    """

    def __init__(self, min_interval_s: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.min_interval_s, self._interval = min_interval_s, _Interval(min_interval_s)

    # Lightning's tqdm bar asks this private hook before every redraw (Lightning 2.6; a test pins its use).
    def _should_update(self, current: int, total) -> bool:
        return super()._should_update(current, total) and self._interval.due(force=current == total)


class ThrottledRichProgressBar(RichProgressBar):
    """Lightning's ``RichProgressBar`` (the bar itself moves every batch, which reads nothing), with
    the metrics read at most every ``min_interval_s`` seconds within an epoch and always at its end.

    Args:
        min_interval_s: least time between two reads of the metrics (each one synchronization).
    """

    def __init__(self, min_interval_s: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.min_interval_s, self._interval = min_interval_s, _Interval(min_interval_s)
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
