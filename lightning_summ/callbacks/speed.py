"""Measure training, validation and predict speed: samples/s, real (non-pad) tokens/s, peak GPU memory.

Add it to any run: ``--trainer.callbacks+=lightning_summ.callbacks.SpeedMonitor
--trainer.callbacks.output_path=speed.json``. Timings synchronize the GPU at batch boundaries, skip
warm-up steps, and count real tokens (no padding) as work.
"""

from __future__ import annotations

import json
import math
import time
from typing import Optional

import torch
from lightning.pytorch.callbacks import Callback

from lightning_summ.console import say
from lightning_summ.outputs import atomic_write


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Meter:
    """Wall-clock time between consecutive batch ends (data loading, optimizer and hooks included)."""

    def __init__(self):
        self.mark: Optional[float] = None  # time of the last batch end (or of the loop's start)
        self.batches: list[tuple[int, int, float]] = []  # (samples, real tokens, seconds) per timed batch

    def start(self, device: torch.device) -> None:
        _sync(device)
        self.mark = time.perf_counter()

    def add(self, device: torch.device, batch: dict) -> None:
        _sync(device)
        now = time.perf_counter()
        if self.mark is not None:
            self.batches.append((len(batch["fname"]), int(batch["num_tokens"]), now - self.mark))
        self.mark = now

    def as_dict(self, per_batch: bool = False) -> dict:
        samples, tokens, seconds = (sum(column) for column in zip(*self.batches)) if self.batches else (0, 0, 0.0)
        rate = lambda x: x / seconds if seconds else 0.0  # noqa: E731
        result = {"steps": len(self.batches), "samples": samples, "tokens": tokens, "seconds": round(seconds, 3),
                  "samples_per_s": round(rate(samples), 3), "tokens_per_s": round(rate(tokens), 1)}
        if per_batch:
            result["batches"] = [(n, round(t, 4)) for n, _, t in self.batches]
        return result


class SpeedMonitor(Callback):
    """Training, validation and predict throughput and peak memory, printed and saved as JSON at the
    end of fit or predict.

    Times are wall-clock spans from one batch end to the next (so data loading, the optimizer and
    other callbacks count, as a user waiting for the run sees them); training excludes the first
    ``warmup_steps`` batches and any validation in between. Those warm-up batches are timed on their
    own (``train_warmup``, from the start of training): with ``model.compile`` that is where the
    compile time shows, reported apart from the steady rate it is amortised over. ``train_loss``
    says whether training was sane: over every training batch (warm-up included), how many losses
    were NaN or infinite, and the last one (read after the batch-end synchronization, so no extra wait).

    Args:
        warmup_steps: training batches not timed (compilation, allocator warm-up).
        output_path: JSON file to write; ``None`` writes ``speed.json`` in the run's log directory.
        per_batch: also save ``[samples, seconds]`` of every timed batch (to see a first-batch compile).
    """

    def __init__(self, warmup_steps: int = 3, output_path: Optional[str] = None, per_batch: bool = False):
        self.warmup_steps, self.output_path, self.per_batch = warmup_steps, output_path, per_batch
        self.train, self.val, self.predict, self.warmup = _Meter(), _Meter(), _Meter(), _Meter()
        self._train_batches = 0
        self._losses: list[float] = []  # every training batch's loss, warm-up included

    def on_train_start(self, trainer, pl_module) -> None:
        if self.warmup_steps:
            self.warmup.start(pl_module.device)

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._train_batches += 1
        if self._train_batches > self.warmup_steps:
            self.train.add(pl_module.device, batch)
        else:
            self.warmup.add(pl_module.device, batch)
            if self._train_batches == self.warmup_steps:
                self.train.start(pl_module.device)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):  # the GPU was synchronized above: reading it does not wait
            # Lightning hands over the loss divided by the accumulation (what backward saw)
            scale = trainer.accumulate_grad_batches if getattr(pl_module, "automatic_optimization", False) else 1
            self._losses.append(float(loss.detach()) * scale)

    def on_validation_start(self, trainer, pl_module) -> None:
        self.val.start(pl_module.device)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self.val.add(pl_module.device, batch)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.train.mark is not None:  # validation time is not training time
            self.train.start(pl_module.device)
        elif self.warmup.mark is not None:
            self.warmup.start(pl_module.device)

    def on_predict_start(self, trainer, pl_module) -> None:
        self.on_fit_start(trainer, pl_module)
        self.predict.start(pl_module.device)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.predict.add(pl_module.device, batch)

    def on_predict_end(self, trainer, pl_module) -> None:
        self.on_fit_end(trainer, pl_module)

    def results_for(self, trainer) -> dict:
        device = trainer.strategy.root_device  # the module itself may already be back on the CPU
        cuda = device.type == "cuda"
        nonfinite = sum(not math.isfinite(x) for x in self._losses)
        return {"train": self.train.as_dict(self.per_batch), "train_warmup": self.warmup.as_dict(),
                "train_loss": {"batches": len(self._losses), "nonfinite": nonfinite,
                               "last": self._losses[-1] if self._losses else None},
                "validation": self.val.as_dict(self.per_batch),
                "predict": self.predict.as_dict(self.per_batch),
                "peak_mem_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
                "device": torch.cuda.get_device_name(device) if cuda else device.type}

    def on_fit_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir  # a collective call under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        result = self.results_for(trainer)
        path = self.output_path or f"{log_dir or '.'}/speed.json"
        with atomic_write(path) as f:
            json.dump(result, f, indent=2)
        say(f"Speed: {json.dumps(result)}")
