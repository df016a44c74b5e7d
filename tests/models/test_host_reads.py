"""A steady training step reads nothing back from the device.

Each read of a tensor's value by the host (``bool()``, ``item()``, ``int()``...) makes it wait for the
GPU to finish everything queued, so it can no longer queue step n+1 while the GPU runs step n. Two
such waits cost the CUDA-graph KoBART step a third of its time (``bench/NOTES.md``, rounds 8 and 9):
Lightning turning a ``prog_bar`` value into a number after every batch, and transformers checking
its 2-D masks. On the CPU nothing waits, so the reads are counted instead, over a whole fit's steps.
"""

from __future__ import annotations

import traceback

import lightning.pytorch as pl
import torch

from lightning_summ import OptimizerSettings, Seq2SeqSummarizer, SummarizationDataModule
from tests.models.test_seq2seq import TINY_BART, TOKENIZER

READS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__")
# Host data, not device values: the batch sampler orders host tensors of lengths.
HOST_ONLY = ("lightning_summ/data/batching.py",)


class ReadCounter(pl.Callback):
    """Records who reads a tensor between the start of ``first`` and the end of ``last`` training batch."""

    def __init__(self, first: int, last: int):
        self.first, self.last, self.open, self.sites = first, last, False, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.open = self.open or batch_idx == self.first

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.open = self.open and batch_idx != self.last

    def record(self) -> None:
        if self.open:
            frames = [f for f in traceback.extract_stack()[:-2] if "/torch/" not in f.filename]
            site = f"{frames[-1].filename}:{frames[-1].lineno} ({frames[-1].name})"
            if not any(name in site for name in HOST_ONLY):
                self.sites.append(site)


def test_a_steady_seq2seq_training_step_reads_no_tensor_back(tmp_path, monkeypatch):
    counter = ReadCounter(first=2, last=7)
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original):
            counter.record()
            return _original(self, *args)
        monkeypatch.setattr(torch.Tensor, name, counted)
    # fused: what the GPU gets by default (the CPU's default loop reads Adam's step count)
    model = Seq2SeqSummarizer(tokenizer=TOKENIZER, model_config=TINY_BART, optimizer=OptimizerSettings(fused=True))
    data = SummarizationDataModule(model.processor, train_path="pkg://sample_data/train.csv",
                                   val_path="pkg://sample_data/dev.csv", batch_size=4)
    trainer = pl.Trainer(accelerator="cpu", max_steps=8, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         limit_val_batches=0, gradient_clip_val=1.0, callbacks=[counter])
    trainer.fit(model, data)
    assert trainer.global_step == 8 and not counter.open
    assert counter.sites == []
