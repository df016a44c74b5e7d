"""optimizer.schedule_to: max_time — warmup and decay fitted to trainer.max_time, on a fake clock."""

from __future__ import annotations

import pytest
import torch

from conftest import QUICKSTART, TINY
from lightning_summ.commands import main
from lightning_summ.models import base as base_module
from lightning_summ.models import schedules
from lightning_summ.models.schedules import TimeBudgetLR, TrainingClock


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _scheduler(clock, **kwargs):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return optimizer, TimeBudgetLR(optimizer, 100.0, clock, **kwargs)


def _run(optimizer, scheduler, fake, seconds_per_step, steps):
    lrs = []
    for _ in range(steps):
        scheduler.refresh()  # what on_train_batch_start does
        lrs.append(optimizer.param_groups[0]["lr"])
        fake.now += seconds_per_step
        optimizer.step()
        scheduler.step()
    return lrs


def test_lr_warms_up_over_a_fraction_of_the_budget_then_reaches_zero_when_it_is_spent():
    fake = FakeTime()
    clock = TrainingClock(fake)
    optimizer, scheduler = _scheduler(clock, kind="linear", warmup_ratio=0.1)
    clock.start()
    lrs = _run(optimizer, scheduler, fake, 1.0, 101)  # one step per second, budget 100 s
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5)  # halfway through the 90 s of decay
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11])) and all(a > b for a, b in zip(lrs[10:100], lrs[11:101]))
    assert lrs[99] == pytest.approx(0.01 / 0.9) and lrs[100] == 0.0


def test_cosine_decay_and_step_counted_warmup_start_the_decay_where_warmup_ended():
    fake = FakeTime()
    clock = TrainingClock(fake)
    optimizer, scheduler = _scheduler(clock, kind="cosine", warmup_steps=4)
    clock.start()
    lrs = _run(optimizer, scheduler, fake, 2.0, 51)
    assert lrs[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])  # warmup at step 4 ends at 8 s of 100
    assert scheduler.warmup_end == pytest.approx(0.08)
    assert lrs[27] == pytest.approx(0.5, abs=1e-9)  # 54 s: halfway from 8 s to 100 s, cos(pi/2)
    assert lrs[50] == pytest.approx(0.0, abs=1e-12)


def test_validation_time_is_not_training_progress_but_the_run_still_ends_at_zero():
    fake = FakeTime()
    clock = TrainingClock(fake)
    optimizer, scheduler = _scheduler(clock, kind="linear")
    clock.start()
    _run(optimizer, scheduler, fake, 1.0, 30)
    clock.pause()
    fake.now += 50.0  # a long validation: spends budget, not training progress
    clock.resume()
    assert clock.now() == (30.0, 50.0)
    assert scheduler.progress() == pytest.approx(30 / 50)
    lrs = _run(optimizer, scheduler, fake, 1.0, 21)
    assert lrs[0] == pytest.approx(1 - 30 / 50) and lrs[20] == pytest.approx(0.0)  # 30 + 50 + 20 = budget


def test_state_round_trip_continues_the_schedule_after_a_resume():
    fake = FakeTime()
    clock = TrainingClock(fake)
    optimizer, scheduler = _scheduler(clock, kind="linear", warmup_steps=3)
    clock.start()
    _run(optimizer, scheduler, fake, 1.0, 40)
    state = scheduler.state_dict()
    assert "optimizer" not in state and state["clock"] == {"training_s": 40.0, "validation_s": 0.0}
    fake2 = FakeTime()
    fake2.now = 1000.0  # another process: another clock origin
    clock2 = TrainingClock(fake2)
    optimizer2, resumed = _scheduler(clock2, kind="linear", warmup_steps=3)
    resumed.load_state_dict(state)
    clock2.start()
    fake2.now += 10.0
    resumed.step()
    assert resumed.last_epoch == 41 and resumed.progress() == pytest.approx(0.5)
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(1 - (0.5 - 0.03) / 0.97)


def _fit_with_fake_clock(cli_run, monkeypatch, *extra):
    """Fit the tiny quickstart while each training step takes 60 fake seconds (budget 10 minutes)."""
    fake, lrs = FakeTime(), []
    monkeypatch.setattr(schedules, "monotonic", fake)
    original = base_module.SummarizerBase.training_step

    def timed_step(self, batch, batch_idx):
        lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        fake.now += 60.0
        return original(self, batch, batch_idx)

    monkeypatch.setattr(base_module.SummarizerBase, "training_step", timed_step)
    cli_run("fit", "--trainer.max_time=00:00:10:00", "--trainer.max_steps=11", "--trainer.max_epochs=20",
            "--trainer.limit_val_batches=0", "--model.init_args.optimizer.schedule_to=max_time", *extra)
    return lrs


def test_fit_through_the_cli_follows_the_time_budget(cli_run, monkeypatch):
    lrs = _fit_with_fake_clock(cli_run, monkeypatch, "--model.init_args.optimizer.warmup_ratio=0.2")
    peak = 2.0e-3  # the quickstart's lr
    assert len(lrs) == 11
    # step k runs after k minutes of the 10-minute budget: warmup over 2 minutes, linear to 0 at 10
    assert lrs == pytest.approx([peak * f for f in (0, .5, 1, .875, .75, .625, .5, .375, .25, .125, 0)])


def test_schedule_to_max_time_without_max_time_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(QUICKSTART), *TINY, "--trainer.max_epochs=1",
              "--model.init_args.optimizer.schedule_to=max_time"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "optimizer.schedule_to: max_time needs trainer.max_time" in err
