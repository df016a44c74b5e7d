"""Measure training, validation and predict speed: samples/s, real (non-pad) tokens/s, peak GPU memory.

Add it to any run: ``--trainer.callbacks+=lightning_summ.callbacks.SpeedMonitor
--trainer.callbacks.output_path=speed.json``. Timings mark batch boundaries (CUDA events on a GPU), skip
warm-up steps, and count real tokens (no padding) as work.
"""

from __future__ import annotations

import json
import time
from typing import Optional

import torch
from lightning.pytorch.callbacks import Callback

from lightning_summ.console import say
from lightning_summ.outputs import atomic_write


def mark_now(device: torch.device):
    """A mark of this point: on CUDA an event in the stream (when the GPU gets there; nothing waits),
    elsewhere the wall-clock time."""
    if device.type != "cuda":
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def seconds_between(start, end) -> float:
    return start.elapsed_time(end) / 1000 if isinstance(start, torch.cuda.Event) else end - start


class _Meter:
    """Time between consecutive batch ends (data loading, optimizer and hooks included).

    On CUDA the marks are events in the stream, read in chunks (one wait every ``PENDING`` batches,
    and at the end): timing does not synchronize the GPU at each batch, so the host prepares the next
    step while the GPU runs this one, as it does in a run without the monitor (a synchronization at
    every batch end would add the host's time to the GPU's). The time between two marks is then the
    stream's: the GPU's work plus any wait for the host.
    """

    PENDING = 256  # marks kept unread at most: then one wait (every 256 batches) reads them

    def __init__(self):
        self.mark = None  # the last batch end's mark (or the loop start's)
        self._pending: list[tuple[int, int, object, object]] = []  # (samples, real tokens, start, end), unread
        self._read: list[tuple[int, int, float]] = []  # (samples, real tokens, seconds) per timed batch

    def start(self, device: torch.device) -> None:
        self.mark = mark_now(device)

    def add(self, device: torch.device, batch: dict) -> None:
        now = mark_now(device)
        if self.mark is not None:
            self._pending.append((len(batch["fname"]), int(batch["num_tokens"]), self.mark, now))
            if len(self._pending) >= self.PENDING:
                self._read_pending()
        self.mark = now

    def _read_pending(self) -> None:
        if self._pending and isinstance(self._pending[-1][3], torch.cuda.Event):
            torch.cuda.synchronize()  # every mark is done, on whichever stream it was recorded
        self._read += [(n, tokens, seconds_between(start, end)) for n, tokens, start, end in self._pending]
        self._pending = []

    @property
    def batches(self) -> list[tuple[int, int, float]]:
        """(samples, real tokens, seconds) per timed batch; waits for the GPU to reach the last mark."""
        self._read_pending()
        return self._read

    def as_dict(self, per_batch: bool = False) -> dict:
        batches = self.batches
        samples, tokens, seconds = (sum(column) for column in zip(*batches)) if batches else (0, 0, 0.0)
        rate = lambda x: x / seconds if seconds else 0.0  # noqa: E731
        result = {"steps": len(batches), "samples": samples, "tokens": tokens, "seconds": round(seconds, 3),
                  "samples_per_s": round(rate(samples), 3), "tokens_per_s": round(rate(tokens), 1)}
        if per_batch:
            result["batches"] = [(n, round(t, 4)) for n, _, t in batches]
        return result


class SpeedMonitor(Callback):
    """Training, validation and predict throughput and peak memory, printed and saved as JSON at the
    end of fit or predict.

    Times are spans from one batch end to the next (so data loading, the optimizer and other
    callbacks count, as a user waiting for the run sees them; on CUDA measured by events in the
    stream, read every 256 batches and at the end, not by a synchronization at each batch); training
    excludes the first ``warmup_steps`` batches and any validation in between. Those warm-up batches are timed on their
    own (``train_warmup``, from the start of training): with ``model.compile`` that is where the
    compile time shows, reported apart from the steady rate it is amortised over. ``train_loss``
    says whether training was sane: over every training batch (warm-up included), how many losses
    were NaN or infinite (counted on the device, read at the end), and the last one.

    Args:
        warmup_steps: training batches not timed (compilation, allocator warm-up).
        output_path: JSON file to write; ``None`` writes ``speed.json`` in the run's log directory.
        per_batch: also save ``[samples, seconds]`` of every timed batch (to see a first-batch compile).
    """

    def __init__(self, warmup_steps: int = 3, output_path: Optional[str] = None, per_batch: bool = False):
        self.warmup_steps, self.output_path, self.per_batch = warmup_steps, output_path, per_batch
        self.train, self.val, self.predict, self.warmup = _Meter(), _Meter(), _Meter(), _Meter()
        self._train_batches = 0
        # Over every training batch, warm-up included; kept on the loss's device, so nothing waits for it.
        self._loss_batches, self._nonfinite, self._last_loss = 0, None, None

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
        if isinstance(loss, torch.Tensor):
            # Lightning hands over the loss divided by the accumulation (what backward saw)
            scale = trainer.accumulate_grad_batches if getattr(pl_module, "automatic_optimization", False) else 1
            loss = loss.detach() * scale
            bad = (~torch.isfinite(loss)).sum()
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite + bad
            self._loss_batches, self._last_loss = self._loss_batches + 1, loss

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
        return {"train": self.train.as_dict(self.per_batch), "train_warmup": self.warmup.as_dict(),
                "train_loss": {"batches": self._loss_batches,
                               "nonfinite": int(self._nonfinite) if self._nonfinite is not None else 0,
                               "last": float(self._last_loss) if self._last_loss is not None else None},
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
