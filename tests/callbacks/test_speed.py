"""SpeedMonitor's loss check: a run whose losses turn NaN says so in its JSON, and the speed
benchmark's table marks the row (timed NaN training once went unnoticed for two GPU rounds)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch

from lightning_summ.callbacks import SpeedMonitor

REPO = Path(__file__).resolve().parents[2]


def test_nonfinite_training_losses_are_counted():
    monitor = SpeedMonitor(warmup_steps=1)
    module = types.SimpleNamespace(device=torch.device("cpu"), automatic_optimization=True)
    trainer = types.SimpleNamespace(strategy=types.SimpleNamespace(root_device=torch.device("cpu")),
                                    accumulate_grad_batches=1)
    batch = {"fname": ["a", "b"], "num_tokens": torch.tensor(7)}
    monitor.on_train_start(trainer, module)
    for loss in (2.5, float("nan"), 1.5, float("inf"), 1.25):
        monitor.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss)}, batch, 0)
    result = monitor.results_for(trainer)
    assert result["train_loss"] == {"batches": 5, "nonfinite": 2, "last": 1.25}
    assert result["train"]["steps"] == 4 and result["train_warmup"]["steps"] == 1


def test_the_loss_is_reported_as_training_step_returned_it_under_accumulation():
    """Lightning hands on_train_batch_end the loss divided by the accumulation; the report undoes that."""
    monitor = SpeedMonitor(warmup_steps=0)
    module = types.SimpleNamespace(device=torch.device("cpu"), automatic_optimization=True)
    trainer = types.SimpleNamespace(strategy=types.SimpleNamespace(root_device=torch.device("cpu")),
                                    accumulate_grad_batches=2)
    batch = {"fname": ["a"], "num_tokens": torch.tensor(3)}
    monitor.on_train_batch_end(trainer, module, {"loss": torch.tensor(1.75)}, batch, 0)
    assert monitor.results_for(trainer)["train_loss"]["last"] == 3.5


def test_the_benchmark_table_marks_a_row_whose_training_went_nonfinite(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from report import Report
    finally:
        sys.path.remove(str(REPO / "bench"))
    report = Report(types.SimpleNamespace(out=str(tmp_path), group="causal-train"))
    side = {"samples_per_s": 1.0, "tokens_per_s": 2.0}
    report.add({"workload": "w", "setting": "sane", "ours": dict(side, train_loss={"batches": 4, "nonfinite": 0})})
    report.add({"workload": "w", "setting": "broken", "ours": dict(side, train_loss={"batches": 4, "nonfinite": 3}),
                "hf": dict(side, train_loss={"mean": float("nan"), "finite": False})})
    table = (tmp_path / "speed_vs_hf_causal-train.md").read_text()
    assert "| sane |" in table
    assert "| broken (ours: 3 of 4 training losses NaN/inf) (HF: mean training loss NaN/inf) |" in table
    assert json.loads((tmp_path / "speed_vs_hf_causal-train.json").read_text())["rows"][1]["ours"]["train_loss"]["nonfinite"] == 3


def test_the_meter_reads_its_marks_in_chunks_and_keeps_every_batch(monkeypatch):
    from lightning_summ.callbacks import speed

    monkeypatch.setattr(speed._Meter, "PENDING", 2)
    clock = iter(float(t) for t in range(10))
    monkeypatch.setattr(speed.time, "perf_counter", lambda: next(clock))
    meter, cpu = speed._Meter(), torch.device("cpu")
    meter.start(cpu)
    for n in (4, 5, 6, 7, 8):
        meter.add(cpu, {"fname": ["x"] * n, "num_tokens": 10 * n})
    assert len(meter._read) == 4 and len(meter._pending) == 1  # read at 2 and 4 pending, not yet the fifth
    assert meter.batches == [(n, 10 * n, 1.0) for n in (4, 5, 6, 7, 8)]
    assert meter.as_dict()["samples"] == 30 and meter.as_dict()["seconds"] == 5.0


def test_on_cuda_the_meter_marks_events_and_waits_only_when_it_reads(monkeypatch):
    """The CUDA path on a CPU machine: a fake event class records stream times; nothing waits per batch."""
    from lightning_summ.callbacks import speed

    stream_time, waits = iter([0, 30, 70, 120]), []

    class FakeEvent:
        def __init__(self, enable_timing):
            assert enable_timing

        def record(self):
            self.ms = next(stream_time)

        def elapsed_time(self, end):
            return end.ms - self.ms

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: waits.append(1))
    meter, gpu = speed._Meter(), torch.device("cuda")
    meter.start(gpu)
    for n in (2, 3, 4):
        meter.add(gpu, {"fname": ["x"] * n, "num_tokens": n})
    assert waits == []
    assert meter.batches == [(2, 2, 0.03), (3, 3, 0.04), (4, 4, 0.05)] and waits == [1]
