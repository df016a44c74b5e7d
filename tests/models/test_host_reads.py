"""A steady training step reads nothing back from the device.

Each read of a tensor's value by the host (``bool()``, ``item()``, ``int()``...) makes it wait for the
GPU to finish everything queued, so it can no longer queue step n+1 while the GPU runs step n.
Lightning turning a ``prog_bar`` value into a number after every batch took 8.9 ms of the ~28 ms
CUDA-graph KoBART step on an H100 (``bench/NOTES.md``, round 8); transformers' checks of its 2-D
masks (round 9, three per BART step) would have taken that wait over. On the CPU nothing waits, so
the reads are counted instead: in a loss, and over a whole fit's steady steps.
"""

from __future__ import annotations

import traceback
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch

from lightning_summ import OptimizerSettings, Seq2SeqSummarizer, SummarizationDataModule
from lightning_summ.models.seq2seq import _ready_masks
from tests.models.test_seq2seq import TINY_BART, TOKENIZER, tiny_model, training_batch

READS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__")
# Reads of host values, which never wait for a GPU: the batch sampler orders host tensors of lengths;
# transformers 5.17's BART draws LayerDrop's number on the host at every layer (`torch.rand([])`).
HOST_ONLY_FILES = ("lightning_summ/data/batching.py",)
HOST_ONLY_LINES = ("layerdrop",)


def device_read_site() -> str | None:
    """Where the running read comes from (the first frame outside torch), or None for a host-only read."""
    frame = [f for f in traceback.extract_stack()[:-2] if "/torch/" not in f.filename][-1]
    if any(name in frame.filename for name in HOST_ONLY_FILES) or any(
            word in (frame.line or "") for word in HOST_ONLY_LINES):
        return None
    return f"{frame.filename}:{frame.lineno} ({frame.name})"


class ReadCounter(pl.Callback):
    """Records who reads a tensor between the start of ``first`` and the end of ``last`` training batch."""

    def __init__(self, first: int, last: int):
        self.first, self.last, self.open, self.sites, self.batches = first, last, False, [], 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.open = self.open or batch_idx == self.first
        self.batches += self.open

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.open = self.open and batch_idx != self.last

    def record(self, site: str) -> None:
        if self.open:
            self.sites.append(site)


def on_every_read(monkeypatch, record) -> None:
    """Calls ``record(site)`` whenever the host reads a device tensor's value (the ``READS`` methods)."""
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original):
            site = device_read_site()
            if site is not None:
                record(site)
            return _original(self, *args)
        monkeypatch.setattr(torch.Tensor, name, counted)


def test_a_steady_seq2seq_training_step_reads_no_tensor_back(tmp_path, monkeypatch):
    counter = ReadCounter(first=2, last=7)
    on_every_read(monkeypatch, counter.record)
    # fused: what the GPU gets by default (the CPU's default loop reads Adam's step count)
    model = Seq2SeqSummarizer(tokenizer=TOKENIZER, model_config=TINY_BART, optimizer=OptimizerSettings(fused=True))
    data = SummarizationDataModule(model.processor, train_path="pkg://sample_data/train.csv",
                                   val_path="pkg://sample_data/dev.csv", batch_size=4)
    trainer = pl.Trainer(accelerator="cpu", max_steps=8, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         limit_val_batches=0, gradient_clip_val=1.0, callbacks=[counter])
    trainer.fit(model, data)
    assert trainer.global_step == 8 and not counter.open and counter.batches == 6
    assert counter.sites == []


@pytest.mark.parametrize("family", ["bart", "mbart", "pegasus"])
def test_the_training_loss_reads_nothing_back_and_equals_the_2d_mask_loss(monkeypatch, family):
    """transformers asks of each 2-D mask whether it could be skipped (a GPU-to-host read, three per
    BART step); the ready 4-D masks skip that and give the loss and gradients of the 2-D masks."""
    model = tiny_model(model_config={**TINY_BART, "model_type": family, "dropout": 0.0})
    batch = training_batch(model)
    reads = []
    on_every_read(monkeypatch, reads.append)
    ours = model.compute_loss(batch)
    assert reads == []
    ours.backward()
    ours_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    decoder_inputs = model.model.prepare_decoder_input_ids_from_labels(labels=batch["labels"].clone())
    logits = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         decoder_input_ids=decoder_inputs, use_cache=False).logits
    assert reads, "the 2-D masks were not inspected: the check above proves nothing"
    plain = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
    plain.backward()
    torch.testing.assert_close(ours, plain, rtol=1e-6, atol=1e-6)
    for name, grad in ours_grads.items():
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, rtol=1e-5, atol=1e-6, msg=name)


def test_a_t5_an_eager_attention_or_a_traced_forward_keeps_the_2d_mask(monkeypatch):
    mask = torch.tensor([[1, 1, 0]])
    for family, attention in (("t5", "sdpa"), ("bart", "eager")):  # t5: not checked, so not listed
        config = SimpleNamespace(model_type=family, _attn_implementation=attention)
        assert _ready_masks(config, mask, 4) == {"attention_mask": mask}
    bart = SimpleNamespace(model_type="bart", _attn_implementation="sdpa")
    assert _ready_masks(bart, mask, 4).keys() == {"attention_mask", "decoder_attention_mask"}
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # compile_scope: step checks nothing
    assert _ready_masks(bart, mask, 4) == {"attention_mask": mask}
