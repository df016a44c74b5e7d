"""Learning-rate schedules fitted to a wall-clock budget (``optimizer.schedule_to: max_time``).

With ``trainer.max_time`` the run stops when the time is up, whatever ``max_epochs`` says; a
schedule planned in steps for ``max_epochs`` then stops wherever the clock cuts it (a 6-minute run
of a 40-epoch plan ends near the peak learning rate). Here the schedule's progress is *time*:

    progress = training seconds / (budget - validation seconds)

Training seconds run from the first training step (``on_train_start``, where Lightning's ``Timer``
starts too) and pause while validation runs during fit. Validation does spend the budget (the
``Timer`` that stops the run counts it), so it is taken off the denominator instead: the lr used by a
step depends only on the training time before it, and progress reaches 1 exactly when the ``Timer``
stops the run. Future validations are not known in advance, so progress jumps a little after each.
The lr is recomputed before every training batch (``refresh``), not only after each optimizer step.
"""

from __future__ import annotations

import math
from time import monotonic
from typing import Callable, Optional

import torch
from torch.optim.lr_scheduler import LRScheduler


class TrainingClock:
    """Seconds of training and of validation since :meth:`start`, from an injectable time source
    (default: this module's ``monotonic``, looked up at each call so that tests can replace it)."""

    def __init__(self, time_source: Optional[Callable[[], float]] = None):
        self.time_source = time_source or (lambda: monotonic())
        self.training_s = self.validation_s = 0.0
        self._since: Optional[float] = None  # when the running span began
        self._paused = False
        self.started = False

    def start(self) -> None:
        """Begin (or, after a resume, continue) counting training time."""
        self.started, self._paused, self._since = True, False, self.time_source()

    def _lap(self) -> float:
        now = self.time_source()
        span, self._since = now - (self._since if self._since is not None else now), now
        return span

    def pause(self) -> None:
        """Validation begins: what follows counts as validation time."""
        if self.started and not self._paused:
            self.training_s += self._lap()
            self._paused = True

    def resume(self) -> None:
        """Validation ends: back to training time."""
        if self.started and self._paused:
            self.validation_s += self._lap()
            self._paused = False

    def now(self) -> tuple[float, float]:
        """(training seconds, validation seconds) up to this moment."""
        if not self.started:
            return 0.0, 0.0
        running = self.time_source() - self._since
        return (self.training_s, self.validation_s + running) if self._paused else \
            (self.training_s + running, self.validation_s)

    def state_dict(self) -> dict:
        training_s, validation_s = self.now()
        return {"training_s": training_s, "validation_s": validation_s}

    def load_state_dict(self, state: dict) -> None:
        self.training_s, self.validation_s = state["training_s"], state["validation_s"]
        self.started, self._since = False, None  # start() resumes counting at the next on_train_start


def decay_factor(kind: str, fraction: float) -> float:
    """Multiplier after warmup, ``fraction`` of the decay done: linear or cosine to 0, or constant."""
    fraction = min(max(fraction, 0.0), 1.0)
    if kind == "linear":
        return 1.0 - fraction
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * fraction))
    return 1.0


class TimeBudgetLR(LRScheduler):
    """Warmup then decay over a time budget, stepped once per optimizer step.

    Warmup is either a fraction of the budget (``warmup_ratio``: the lr rises with progress) or a
    number of optimizer steps (``warmup_steps``: as in step schedules); the decay then runs from the
    progress where warmup ended to 1, reaching 0 (linear, cosine) when the budget is spent.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, budget_s: float, clock: TrainingClock,
                 kind: str = "linear", warmup_ratio: float = 0.0, warmup_steps: int = 0):
        if budget_s <= 0:
            raise ValueError(f"the time budget must be > 0 seconds, got {budget_s}")
        self.budget_s, self.clock, self.kind = float(budget_s), clock, kind
        self.warmup_ratio, self.warmup_steps = warmup_ratio, warmup_steps
        self.warmup_end: Optional[float] = warmup_ratio if not warmup_steps else None
        super().__init__(optimizer)

    def progress(self) -> float:
        training_s, validation_s = self.clock.now()
        return min(training_s / max(self.budget_s - validation_s, 1e-9), 1.0)

    def factor(self) -> float:
        progress, step = self.progress(), self.last_epoch
        if self.warmup_steps and step < self.warmup_steps:
            return step / self.warmup_steps
        if self.warmup_end is None:  # the first step after step-counted warmup: decay starts here
            self.warmup_end = progress
        if progress < self.warmup_end:  # warmup_ratio: still warming up
            return progress / self.warmup_end
        return decay_factor(self.kind, (progress - self.warmup_end) / max(1.0 - self.warmup_end, 1e-9))

    def get_lr(self) -> list[float]:
        factor = self.factor()
        return [base * factor for base in self.base_lrs]

    def refresh(self) -> None:
        """Set the lr for the time now without counting a step: called before each training batch,
        so a step after validation (or a slow batch) uses the progress made until it starts."""
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "clock")}
        state["clock"] = self.clock.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        self.clock.load_state_dict(state.pop("clock"))
        self.__dict__.update(state)
