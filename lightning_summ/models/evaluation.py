"""What every summarizer shares, trained or not: decoding, validation / test by ROUGE, predict, and
the processor's state in checkpoints.

A module here holds a ``processor`` (text -> features) and a ``decoder`` (batch -> scored candidate
summaries, ``lightning_summ.decoding``); trained models (``SummarizerBase``) add a network, a loss
and an optimizer, the API summarizer adds a client. Everything the Trainer sees in evaluation
(logging names, text samples, prediction records) is decided here once.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, is_dataclass
from typing import Optional

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_summ.decoding.attention import attention_for_generation
from lightning_summ.decoding.generate import Candidates
from lightning_summ.errors import ConfigError
from lightning_summ.metrics.rouge import SummaryRouge
from lightning_summ.models.settings import EvaluationSettings
from lightning_summ.processing import SummaryProcessor


class SummaryEvaluationModule(LightningModule):
    def __init__(self, processor: SummaryProcessor, decoder, evaluation: Optional[EvaluationSettings] = None):
        super().__init__()
        self.processor, self.decoder = processor, decoder
        self.evaluation = evaluation or EvaluationSettings()
        self.val_rouge = SummaryRouge(self.evaluation.rouge_tokenizer, self.evaluation.multi_ref)
        self.test_rouge = SummaryRouge(self.evaluation.rouge_tokenizer, self.evaluation.multi_ref)
        self._text_samples: list[tuple[str, str, str]] = []
        self._generated_this_epoch = False

    def _plain_hparams(self) -> None:
        """Turn settings dataclasses in ``hparams`` into dicts (they are already dicts under the CLI):
        TensorBoard can show them and checkpoints load with ``weights_only=True``."""
        for key, value in list(self.hparams.items()):
            if is_dataclass(value):
                self.hparams[key] = asdict(value)

    # -- decoding ---------------------------------------------------------------------------------
    static_cache = False  # trained models: generation.static_cache (keeps cuDNN attention)

    @torch.no_grad()
    def generate_candidates(self, batch: dict) -> list[Candidates]:
        """Scored candidates per row, best first, from the installed decoder."""
        device = batch["input_ids"].device if "input_ids" in batch else self.device
        with attention_for_generation(self.static_cache, device):
            return self.decoder(self, batch)

    def inference_context(self):
        """What decoding outside a Trainer (``serve``) runs under; see ``SummarizerBase``."""
        return nullcontext()

    def validation_loss(self, batch: dict) -> Optional[torch.Tensor]:
        """The loss on the gold summaries, for models that have one."""
        return None

    # -- evaluation -------------------------------------------------------------------------------
    def _should_generate(self) -> bool:
        if self.trainer.sanity_checking:
            return False  # an untrained model's summaries cost minutes and say nothing
        if self.trainer.state.fn != "fit":
            return True
        return (self.current_epoch + 1) % self.evaluation.generate_every_n_epochs == 0

    def _score_batch(self, batch: dict, metric: SummaryRouge, limit: Optional[int]) -> None:
        if limit is not None:
            keep = (batch["index"] < limit).nonzero().flatten().tolist()
            if not keep:
                return
            batch = select_rows(batch, keep)
        preds = [c[0][0] for c in self.generate_candidates(batch)]
        metric.update(preds, batch["references"], ids=batch["index"])
        self._generated_this_epoch = True
        for fname, pred, refs in zip(batch["fname"], preds, batch["references"]):
            if len(self._text_samples) < self.evaluation.num_text_samples:
                self._text_samples.append((fname, pred, refs[0] if refs else ""))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = self.validation_loss(batch)
        if loss is not None:
            self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["fname"]), sync_dist=True)
        if self._should_generate():
            self._score_batch(batch, self.val_rouge, self.evaluation.generate_limit)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        loss = self.validation_loss(batch)
        if loss is not None:
            self.log("test/loss", loss, batch_size=len(batch["fname"]), sync_dist=True)
        self._score_batch(batch, self.test_rouge, None)

    def _log_rouge(self, metric: SummaryRouge, prefix: str) -> None:
        if self._generated_this_epoch:
            scores = metric.compute()
            for key, value in scores.items():
                self.log(f"{prefix}/{key}", value, prog_bar=key == "rouge_mean")
            if prefix == "val":
                self.log("hp_metric", scores["rouge_mean"])  # TensorBoard's hparams tab shows the latest
            self._log_text_samples(prefix)
        metric.reset()
        self._text_samples, self._generated_this_epoch = [], False

    def _log_text_samples(self, prefix: str) -> None:
        if not isinstance(self.logger, TensorBoardLogger) or not self._text_samples:
            return
        cell = lambda s: s.replace("|", "\\|").replace("\n", "<br>")  # noqa: E731 - markdown table cell
        rows = ["| fname | prediction | reference |", "|---|---|---|"]
        rows += [f"| {cell(f)} | {cell(p)} | {cell(r)} |" for f, p, r in self._text_samples]
        self.logger.experiment.add_text(f"{prefix}/samples", "\n".join(rows), self.global_step)

    def on_validation_epoch_end(self) -> None:
        self._log_rouge(self.val_rouge, "val")

    def on_test_epoch_end(self) -> None:
        self._log_rouge(self.test_rouge, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        """One record per input: row index, fname, the summary and all candidates with scores."""
        records = []
        for i, cands in enumerate(self.generate_candidates(batch)):
            records.append({
                "index": int(batch["index"][i]), "fname": batch["fname"][i], "summary": cands[0][0],
                "candidates": [{"text": t, "score": s} for t, s in cands],
            })
        return records

    # -- checkpoints: the processor travels with the weights ---------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lightning_summ"] = {"processor": self.processor.state(), "tags": self.processor.tags}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("lightning_summ", {})
        if "processor" in saved:
            self.processor.verify(saved["processor"])
        elif saved.get("tags") is not None and saved["tags"] != self.processor.tags:  # older checkpoints
            raise ConfigError(f"the checkpoint was trained with {len(saved['tags'])} #Tag# tokens, this run has "
                              f"{len(self.processor.tags or [])}; use the training config's data.train_path")


def read_checkpoint(path, mmap: bool = False) -> dict:
    """A checkpoint written by ``fit``, as a dict (tensors on the CPU), or a one-line error.
    ``mmap``: map the tensors instead of reading them (cheap when only the metadata is needed)."""
    from pathlib import Path

    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated, garbage or another program's file: torch's messages are pages long
        raise ConfigError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"{path}: not a lightning_summ checkpoint (no state_dict)")
    return checkpoint


def select_rows(batch: dict, rows: list[int]) -> dict:
    """The sub-batch of ``rows`` (tensors indexed, lists picked)."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value[rows]
        elif isinstance(value, list):
            out[key] = [value[i] for i in rows]
        else:
            out[key] = value
    return out
