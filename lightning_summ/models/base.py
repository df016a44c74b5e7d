"""What every summarizer shares: tokenizer, optimizer, validation by generation + ROUGE, predict.

Subclasses (seq2seq, causal LM) supply four things: ``build_model``, ``encode`` (one example to
token ids), ``collator`` and ``compute_loss``; decoder-only models also say which tokens of
``generate``'s output are new (``generated_tokens``) and add ``extra_generate_kwargs``.
Everything the Trainer sees (logging names, checkpoints, prediction records) is decided here once.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, is_dataclass
from typing import Optional

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from transformers import get_scheduler

from lightning_summ.metrics.rouge import SummaryRouge
from lightning_summ.models.loading import load_tokenizer
from lightning_summ.models.settings import EvaluationSettings, GenerationSettings, OptimizerSettings
from lightning_summ.models.soft_voting import soft_voting_beam_search
from lightning_summ.precision import PrecisionError, check_trainable_dtypes, uses_grad_scaler
from lightning_summ.tags import add_tags_to_tokenizer

Candidates = list[tuple[str, float]]  # (text, mean log-probability per generated token), best first


def attention_for_generation(static_cache: bool, device: torch.device):
    """The attention kernels ``generate`` may use.

    A growing (dynamic) key/value cache gives attention a new shape at every decoding step, and
    cuDNN attention builds an execution plan for each new shape (~50-100 ms on an H200, against
    ~0.4 ms per call once planned: ``bench/results/sdpa_new_shapes.json``). So without a static
    cache, generation on CUDA (``generate`` and soft voting's own loop) uses the flash /
    memory-efficient kernels; a static cache keeps one shape per batch and keeps cuDNN.
    """
    if static_cache or device.type != "cuda":
        return nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


class SummarizerBase(LightningModule):
    def __init__(self, tokenizer: str, generation: Optional[GenerationSettings] = None,
                 optimizer: Optional[OptimizerSettings] = None, evaluation: Optional[EvaluationSettings] = None,
                 trust_remote_code: bool = False, ensemble_checkpoints: Optional[list[str]] = None):
        super().__init__()
        self.ensemble_checkpoints = list(ensemble_checkpoints or [])
        # A plain list, not submodules: checkpoints of the first model stay loadable and savable as they are.
        self.members: list[torch.nn.Module] = []
        self.tokenizer_name = tokenizer
        self.generation = generation or GenerationSettings()
        self.optim = optimizer or OptimizerSettings()
        self.evaluation = evaluation or EvaluationSettings()
        self.trust_remote_code = trust_remote_code
        self.model = None  # built in configure_model, so that instantiating a config is cheap
        self._tokenizer = None
        self.tags: list[str] = []
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

    # -- subclass interface ----------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def encode(self, dialogue: str, summary: Optional[str], for_generation: bool) -> dict:
        raise NotImplementedError

    def collator(self, for_generation: bool, pad_to_multiple_of: int = 1):
        raise NotImplementedError

    def compute_loss(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def generated_tokens(self, out, batch: dict) -> torch.Tensor:
        """The generated part of ``out.sequences`` (decoder-only models return the prompt too)."""
        return out.sequences

    def extra_generate_kwargs(self) -> dict:
        """Model-specific ``generate`` arguments on top of the generation settings."""
        return {}

    @torch.no_grad()
    def generate_candidates(self, batch: dict) -> list[Candidates]:
        """``num_return_sequences`` scored candidates per row, best first (soft voting with members)."""
        # Both paths decode step by step with a cache (soft voting's own loop always a dynamic one).
        with attention_for_generation(self.generation.static_cache, batch["input_ids"].device):
            if self.members:
                return self.soft_voting_candidates(batch)
            return self._generate(batch)

    def _generate(self, batch: dict) -> list[Candidates]:
        kwargs = self.generation.generate_kwargs()
        n = kwargs["num_return_sequences"]
        out = self.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  use_cache=True, return_dict_in_generate=True, output_scores=True,
                                  **self.extra_generate_kwargs(), **kwargs)
        decoded = self.tokenizer.batch_decode(self.generated_tokens(out, batch), skip_special_tokens=True)
        texts = [t.strip() for t in decoded]
        scores = sequence_scores(self.model, out, self.tokenizer.pad_token_id)
        return [list(zip(texts[i * n:(i + 1) * n], scores[i * n:(i + 1) * n])) for i in range(len(texts) // n)]

    # -- tokenizer and vocabulary ----------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_name, self.trust_remote_code)
        return self._tokenizer

    def register_tags(self, tags: list[str]) -> None:
        """Add ``#Tag#`` tokens; must happen before ``configure_model`` sizes the embeddings."""
        if self.model is not None and list(tags) != self.tags:
            raise RuntimeError("register_tags after the model was built would change its vocabulary")
        self.tags = list(tags)
        add_tags_to_tokenizer(self.tokenizer, self.tags)

    def configure_model(self) -> None:
        if self.model is not None:
            return
        self.model = self.build_model()  # sized for len(self.tokenizer), tags included
        for path in self.ensemble_checkpoints:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            self.on_load_checkpoint(checkpoint)  # same #Tag# vocabulary (and adapters), or a clear error
            member = self.build_model()
            member.load_state_dict({k[len("model."):]: v for k, v in checkpoint["state_dict"].items()
                                    if k.startswith("model.")}, strict=self.strict_loading)
            self.members.append(member.eval().requires_grad_(False))

    # -- soft voting ------------------------------------------------------------------------------
    decoder_start_token_id: Optional[int] = None  # set by encoder-decoder models

    def eos_token_ids(self) -> list[int]:
        return [self.tokenizer.eos_token_id]

    def soft_voting_candidates(self, batch: dict) -> list[Candidates]:
        """One beam search over the mean next-token log-probabilities of this model and its members."""
        g = self.generation
        if g.do_sample or g.repetition_penalty != 1.0 or not g.early_stopping or g.static_cache:
            raise ValueError("soft voting supports beam search/greedy with early_stopping: true only "
                             "(no do_sample, repetition_penalty, static_cache)")
        config = self.model.generation_config
        for member in self.members:  # not submodules, so Lightning does not move them
            member.to(device=self.device)
        results = soft_voting_beam_search(
            [self.model, *self.members], batch["input_ids"], batch["attention_mask"],
            decoder_start_token_id=self.decoder_start_token_id, eos_token_id=self.eos_token_ids(),
            num_beams=max(g.num_beams, 1), max_new_tokens=g.max_new_tokens, min_new_tokens=g.min_new_tokens,
            length_penalty=g.length_penalty, no_repeat_ngram_size=g.no_repeat_ngram_size,
            num_return_sequences=g.num_return_sequences, forced_bos_token_id=config.forced_bos_token_id,
            forced_eos_token_id=config.forced_eos_token_id)
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True).strip()  # noqa: E731
        return [[(decode(ids), score) for ids, score in row] for row in results]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lightning_summ"] = {"tags": self.tags, "vocab_size": len(self.tokenizer)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("lightning_summ", {}).get("tags")
        if saved is not None and saved != self.tags:
            missing = sorted(set(saved) - set(self.tags))
            raise RuntimeError(
                f"the checkpoint was trained with {len(saved)} #Tag# tokens, this run registered {len(self.tags)} "
                f"(missing: {missing[:5]}); use the training config's data.train_path so the vocabularies match"
            )

    # -- training ---------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.ensemble_checkpoints:
            raise ValueError("model.ensemble_checkpoints is for validate/test/predict, not fit")
        check_trainable_dtypes(self, str(self.trainer.precision), uses_grad_scaler(self.trainer.precision_plugin))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch)
        n = len(batch["fname"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=n)
        return loss

    def configure_optimizers(self):
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        decay = [p for n, p in named if p.ndim >= 2 and "norm" not in n.lower()]
        no_decay = [p for n, p in named if not (p.ndim >= 2 and "norm" not in n.lower())]
        # Under fp16's GradScaler a fused step unscales gradients inside the kernel, after clipping
        # would have run on still-scaled gradients: there, clip with the foreach implementation.
        scaled_clipping = uses_grad_scaler(self.trainer.precision_plugin) and bool(self.trainer.gradient_clip_val)
        fused = self.optim.fused if self.optim.fused is not None else \
            all(p.is_cuda for _, p in named) and not scaled_clipping
        if fused and scaled_clipping:
            raise PrecisionError("optimizer.fused with a GradScaler (16-mixed) and gradient clipping would clip scaled "
                                 "gradients; set optimizer.fused to null, or use precision bf16-mixed")
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.optim.lr, betas=tuple(self.optim.betas), eps=self.optim.eps, fused=fused,
        )
        total = int(self.trainer.estimated_stepping_batches)
        warmup = self.optim.warmup_steps or int(self.optim.warmup_ratio * total)
        name = "constant_with_warmup" if self.optim.scheduler == "constant" else self.optim.scheduler
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip safely with fused AdamW. Lightning refuses any clipping with a fused optimizer under
        mixed precision, because of fp16's GradScaler; without a scaler (bf16-mixed, 32-true)
        gradients are never scaled, so we clip them directly and keep the fused kernel."""
        if not gradient_clip_val:
            return
        if uses_grad_scaler(self.trainer.precision_plugin):  # Lightning unscales first (optimizer not fused)
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

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
        self.log("val/loss", self.compute_loss(batch), prog_bar=True, batch_size=len(batch["fname"]), sync_dist=True)
        if self._should_generate():
            self._score_batch(batch, self.val_rouge, self.evaluation.generate_limit)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.log("test/loss", self.compute_loss(batch), batch_size=len(batch["fname"]), sync_dist=True)
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


def select_rows(batch: dict, rows: list[int]) -> dict:
    """The sub-batch of ``rows`` (tensors indexed, lists picked)."""
    out = {}
    for key, value in batch.items():
        if not isinstance(value, (torch.Tensor, list)):
            out[key] = value
        elif isinstance(value, torch.Tensor):
            out[key] = value[rows]
        else:
            out[key] = [value[i] for i in rows]
    return out


def sequence_scores(model, out, pad_id: Optional[int]) -> list[float]:
    """Mean log-probability per generated token of each returned sequence (beam search reports its
    length-penalised score; greedy and sampling are scored from their transition scores)."""
    if getattr(out, "sequences_scores", None) is not None:
        return out.sequences_scores.float().tolist()
    steps = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    generated = out.sequences[:, -steps.shape[1]:]
    mask = generated != pad_id if pad_id is not None else torch.ones_like(generated, dtype=torch.bool)
    steps = steps.float().masked_fill(~mask, 0.0)
    return (steps.sum(1) / mask.sum(1).clamp(min=1)).tolist()
