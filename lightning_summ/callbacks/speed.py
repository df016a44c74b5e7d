"""Measure training, validation and predict speed: samples/s, real (non-pad) tokens/s, peak GPU memory.

Add it to any run: ``--trainer.callbacks+=lightning_summ.callbacks.SpeedMonitor
--trainer.callbacks.output_path=speed.json``. Timings synchronize the GPU at batch boundaries, skip
warm-up steps, and count tokens from the attention masks, so padding is not counted as work.
"""

from __future__ import annotations

import json
import time
from typing import Optional

import torch
from lightning.pytorch.callbacks import Callback

from lightning_summ.io_utils import atomic_write


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Meter:
    def __init__(self):
        self.seconds, self.samples, self.tokens, self.steps = 0.0, 0, 0, 0

    def as_dict(self) -> dict:
        rate = lambda x: x / self.seconds if self.seconds else 0.0  # noqa: E731
        return {"steps": self.steps, "samples": self.samples, "tokens": self.tokens, "seconds": round(self.seconds, 3),
                "samples_per_s": round(rate(self.samples), 3), "tokens_per_s": round(rate(self.tokens), 1)}


class SpeedMonitor(Callback):
    """Training, validation and predict throughput and peak memory, printed and saved as JSON at the
    end of fit or predict.

    Args:
        warmup_steps: training steps (batches) not timed (compilation, allocator warm-up).
        output_path: JSON file to write; ``None`` writes ``speed.json`` in the run's log directory.
    """

    def __init__(self, warmup_steps: int = 3, output_path: Optional[str] = None):
        self.warmup_steps, self.output_path = warmup_steps, output_path
        self.train, self.val, self.predict = _Meter(), _Meter(), _Meter()
        self._start = 0.0
        self._train_batches = 0

    @staticmethod
    def _count(batch: dict) -> tuple[int, int]:
        return len(batch["fname"]), int(batch["num_tokens"])

    def _begin(self, pl_module) -> None:
        _sync(pl_module.device)
        self._start = time.perf_counter()

    def _end(self, meter: _Meter, pl_module, batch: dict) -> None:
        _sync(pl_module.device)
        samples, tokens = self._count(batch)
        meter.seconds += time.perf_counter() - self._start
        meter.samples, meter.tokens, meter.steps = meter.samples + samples, meter.tokens + tokens, meter.steps + 1

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._begin(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._train_batches += 1
        if self._train_batches > self.warmup_steps:
            self._end(self.train, pl_module, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._begin(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._end(self.val, pl_module, batch)

    def on_predict_start(self, trainer, pl_module) -> None:
        self.on_fit_start(trainer, pl_module)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._begin(pl_module)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._end(self.predict, pl_module, batch)

    def on_predict_end(self, trainer, pl_module) -> None:
        self.on_fit_end(trainer, pl_module)

    def results_for(self, trainer) -> dict:
        device = trainer.strategy.root_device  # the module itself may already be back on the CPU
        cuda = device.type == "cuda"
        return {"train": self.train.as_dict(), "validation": self.val.as_dict(), "predict": self.predict.as_dict(),
                "peak_mem_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
                "device": torch.cuda.get_device_name(device) if cuda else device.type}

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        result = self.results_for(trainer)
        path = self.output_path or f"{trainer.log_dir or '.'}/speed.json"
        with atomic_write(path) as f:
            json.dump(result, f, indent=2)
        print(f"Speed: {json.dumps(result)}", flush=True)
