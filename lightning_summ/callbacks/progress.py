"""A progress bar that does not synchronize the GPU at every batch.

Each redraw of Lightning's tqdm bar shows the logged metrics (``train/loss``), and turning a CUDA
tensor into a number waits for the GPU. Lightning's default bar redraws after every batch, so a run
would synchronize once per step: the host could not queue step n+1 while the GPU runs step n, and
every step would cost its host time plus its GPU time. This bar redraws at most every
``min_interval_s`` seconds (and at the end of each loop), like tqdm's own ``mininterval``.
"""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import TQDMProgressBar


class ThrottledProgressBar(TQDMProgressBar):
    """Lightning's ``TQDMProgressBar``, redrawn at most every ``min_interval_s`` seconds.

    Args:
        min_interval_s: least time between two redraws (each reads the metrics: one synchronization).
    """

    def __init__(self, min_interval_s: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.min_interval_s = min_interval_s
        self._last_draw = float("-inf")

    # Lightning's bars ask this private hook before every redraw (Lightning 2.6; a test pins its use).
    def _should_update(self, current: int, total) -> bool:
        if not super()._should_update(current, total):
            return False
        now = time.monotonic()
        if current == total or now - self._last_draw >= self.min_interval_s:
            self._last_draw = now
            return True
        return False
