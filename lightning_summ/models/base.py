"""What every trained summarizer shares: the network's life cycle, loss, optimizer and schedule.

Subclasses (seq2seq, causal LM) build their processor from their settings and supply
``build_model`` and ``compute_loss``; decoder-only models also say which tokens of ``generate``'s
output are new (``generated_tokens``) and add ``extra_generate_kwargs``. Decoding is a strategy
(``lightning_summ.decoding``): transformers' ``generate``, or soft voting when
``ensemble_checkpoints`` are given; test-time augmentation wraps either.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional, Union

import torch
from lightning.pytorch.callbacks import Timer
from transformers import get_scheduler

from lightning_summ.decoding.attention import sdpa_without_cudnn
from lightning_summ.decoding.generate import Generate, SoftVoting
from lightning_summ.errors import ConfigError
from lightning_summ.models.compilation import (CompiledBlocks, CompiledStep, check_compile_settings, compile_backend,
                                               resolve_auto, uses_cuda_graphs)
from lightning_summ.models.evaluation import SummaryEvaluationModule, read_checkpoint
from lightning_summ.models.schedules import TimeBudgetLR, TrainingClock
from lightning_summ.models.settings import EvaluationSettings, GenerationSettings, OptimizerSettings
from lightning_summ.precision import PrecisionError, check_trainable_dtypes, uses_grad_scaler
from lightning_summ.processing import SummaryProcessor


class SummarizerBase(SummaryEvaluationModule):
    def __init__(self, processor: SummaryProcessor, generation: Optional[GenerationSettings] = None,
                 optimizer: Optional[OptimizerSettings] = None, evaluation: Optional[EvaluationSettings] = None,
                 trust_remote_code: bool = False, ensemble_checkpoints: Optional[list[str]] = None,
                 compile: Union[bool, str] = False, compile_scope: str = "blocks",
                 compile_mode: Optional[str] = None, cudnn_attention: bool = False):
        super().__init__(processor, Generate(), evaluation)
        self.cudnn_attention = cudnn_attention
        self.compile_backend = compile_backend(compile)
        check_compile_settings(self.compile_backend, compile_scope, compile_mode)
        self.compile_scope, self.compile_mode = compile_scope, compile_mode
        # model.compile, made in configure_model: the compiled blocks, or the compiled loss of a step
        self._compiled_blocks: Optional[CompiledBlocks] = None
        self._compiled_step: Optional[CompiledStep] = None
        self._cuda_graphs = False  # whether the compiled training code replays CUDA graphs
        self.ensemble_checkpoints = list(ensemble_checkpoints or [])
        # A plain list, not submodules: checkpoints of the first model stay loadable and savable as they are.
        self.members: list[torch.nn.Module] = []
        self.generation = generation or GenerationSettings()
        self.optim = optimizer or OptimizerSettings()
        self.trust_remote_code = trust_remote_code
        self.model = None  # built in configure_model, so that instantiating a config is cheap
        # Where configure_model puts the weights outside a Trainer (export, serve); a Trainer's win.
        self.inference_device, self.inference_precision = torch.device("cpu"), "32-true"
        self.training_clock = TrainingClock()  # drives optimizer.schedule_to: max_time

    @property
    def static_cache(self) -> bool:
        return self.generation.static_cache

    # -- subclass interface ----------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def compute_loss(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def validation_loss(self, batch: dict) -> torch.Tensor:
        with self.attention_for_training():
            return self.compute_loss(batch)

    def _training_kernels(self):
        """The SDPA restriction of training (``model.cudnn_attention``) as a context factory: on CUDA,
        flash / memory-efficient / math unless cuDNN attention is asked for; None when nothing is restricted."""
        if self.cudnn_attention or self._device_type() != "cuda":
            return None
        return sdpa_without_cudnn

    def attention_for_training(self):
        """The SDPA kernels of the loss forwards and of the backward (``model.cudnn_attention``: with
        cuDNN attention, PyTorch's default on an H200, a bf16 LoRA run of the left-padded Qwen3
        batches went NaN from its second step there: ``bench/NOTES.md``). The backward needs them too:
        with gradient checkpointing it runs each layer's forward again, and a recomputation that
        picked another kernel than the forward would fail (or bring cuDNN back). Compiled blocks
        enter them inside their graph (``CompiledBlocks``), so that a graph traced under other
        kernels, e.g. an earlier run's in the on-disk compile cache, is not reused."""
        kernels = self._training_kernels()
        return kernels() if kernels is not None else nullcontext()

    def generated_tokens(self, out, batch: dict) -> torch.Tensor:
        """The generated part of ``out.sequences`` (decoder-only models return the prompt too)."""
        return out.sequences

    def extra_generate_kwargs(self) -> dict:
        """Model-specific ``generate`` arguments on top of the generation settings."""
        return {}

    decoder_start_token_id: Optional[int] = None  # set by encoder-decoder models

    def eos_token_ids(self) -> list[int]:
        return [self.tokenizer.eos_token_id]

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    # -- where the weights go -----------------------------------------------------------------------
    def placement(self) -> tuple[torch.device, str]:
        """(device, precision) the network is built for: the Trainer's, or the inference settings."""
        if self._trainer is not None:
            return self.trainer.strategy.root_device, str(self.trainer.precision)
        return self.inference_device, self.inference_precision

    def inference_context(self):
        """Autocast for a mixed precision outside a Trainer (``serve``): under ``predict`` the
        Trainer's precision plugin does the same, so both decode with the same numerics."""
        device, precision = self.placement()
        if self._trainer is None and precision in ("bf16-mixed", "16-mixed"):
            return torch.autocast(device.type, dtype=torch.bfloat16 if precision.startswith("bf16") else torch.float16)
        return nullcontext()

    def enter_inference_weights(self) -> None:
        """Inference-only weights (merged adapters, a dequantized base) where a family has them; the
        predict/test/validate hooks call it, and ``serve``, which runs none of them."""

    def leave_inference_weights(self) -> None:
        """Undo :meth:`enter_inference_weights`."""

    def _device_type(self) -> Optional[str]:
        """The trainer's device type ('cuda', 'cpu', ...); None outside a Trainer (serve, export)."""
        trainer = getattr(self, "_trainer", None)
        return trainer.strategy.root_device.type if trainer is not None else None

    def configure_model(self) -> None:
        if self.model is not None:
            return
        if self.processor.tags is None:
            self.processor.fit_tags()  # no training file given: the known tags only (a checkpoint verifies)
        self.model = self.build_model()  # sized for len(self.tokenizer), tags included
        backend = resolve_auto(self.compile_backend, self._device_type())
        self._cuda_graphs = uses_cuda_graphs(backend, self.compile_mode)
        if backend is not None and self.compile_scope == "step":
            self._compiled_step = CompiledStep(self.compute_loss, backend, self._training_kernels(), self.compile_mode)
        elif backend is not None:
            self._compiled_blocks = CompiledBlocks(self.model, backend, self._training_kernels(), self.compile_mode)
        for path in self.ensemble_checkpoints:
            checkpoint = read_checkpoint(path)
            self.on_load_checkpoint(checkpoint)  # same processor (and adapters), or a clear error
            member = self.build_model()
            load_weights(member, checkpoint, self.strict_loading, prefix="model.")
            self.members.append(member.eval().requires_grad_(False))
        if self.members:
            self.decoder = SoftVoting(self.members)

    # -- training ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.ensemble_checkpoints:  # before configure_model loads every member
            raise ConfigError("model.ensemble_checkpoints is for validate/test/predict, not fit")

    def on_fit_start(self) -> None:
        check_trainable_dtypes(self, str(self.trainer.precision), uses_grad_scaler(self.trainer.precision_plugin))
        self._check_cuda_graphs()

    def on_train_epoch_start(self) -> None:
        self._check_cuda_graphs()  # again: a GradientAccumulationScheduler raises the accumulation here, per epoch

    def _check_cuda_graphs(self) -> None:
        """Refuse what compiled CUDA graphs (``model.compile_mode``, the cudagraphs backend) cannot do
        yet. Conservative on a CPU too, where nothing is graphed, so that a config fails before its GPU run."""
        if not self._cuda_graphs:
            return
        what = f"model.compile with CUDA graphs ({self.compile_mode or self.compile_backend})"
        if self.trainer.accumulate_grad_batches > 1:
            # A micro-batch's gradients would live in CUDA-graph memory that the next micro-batch's replay overwrites.
            raise ConfigError(f"{what} cannot accumulate gradients (trainer.accumulate_grad_batches="
                              f"{self.trainer.accumulate_grad_batches}): set it to 1 with a larger data.batch_size, "
                              "or use another model.compile / model.compile_mode")
        if getattr(self, "gradient_checkpointing", False):
            # Recomputation replays a block's graph while its first forward's outputs are still alive: not checked on a GPU.
            raise ConfigError(f"{what} with model.gradient_checkpointing is not supported yet: set one of them off")

    def on_train_start(self) -> None:
        self.training_clock.start()  # where Lightning's Timer (trainer.max_time) starts too

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, TimeBudgetLR):
                config.scheduler.refresh()  # the lr of the time this batch starts, validation included

    def on_validation_start(self) -> None:
        self.training_clock.pause()  # a no-op outside fit's training (sanity check, validate)

    def on_validation_end(self) -> None:
        self.training_clock.resume()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        with self.attention_for_training():
            loss = self._compiled_step(batch) if self._compiled_step is not None else self.compute_loss(batch)
        n = len(batch["fname"])
        # Not prog_bar: Lightning turns prog_bar values into numbers after every batch, a wait for the
        # GPU at every step; the default bars read the loss when they redraw (callbacks.progress).
        self.log("train/loss", loss, batch_size=n)
        # A host tensor: Lightning turns a Python float into a tensor on the module's device, a
        # blocking copy, which on CUDA waits for the GPU at every step (its own gain not isolated: bench/NOTES.md).
        self.log("train/lr", torch.tensor(float(self.trainer.optimizers[0].param_groups[0]["lr"])), batch_size=n)
        return loss

    def backward(self, loss: torch.Tensor, *args, **kwargs) -> None:
        with self.attention_for_training():  # recomputed forwards (checkpointing) pick the same kernels
            super().backward(loss, *args, **kwargs)

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
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self._scheduler(optimizer), "interval": "step"}}

    def _scheduler(self, optimizer: torch.optim.Optimizer):
        """Warmup + decay planned over the run's optimizer steps, or over ``trainer.max_time``."""
        o = self.optim
        if o.schedule_to == "max_time":
            return TimeBudgetLR(optimizer, self._time_budget_s(), self.training_clock, o.scheduler,
                                o.warmup_ratio, o.warmup_steps)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = o.warmup_steps or int(o.warmup_ratio * total)
        name = "constant_with_warmup" if o.scheduler == "constant" else o.scheduler
        return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)

    def _time_budget_s(self) -> float:
        """``trainer.max_time`` in seconds, read from the ``Timer`` that enforces it."""
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer) and c.time_remaining() is not None),
                     None)
        if timer is None:
            raise ConfigError("optimizer.schedule_to: max_time needs trainer.max_time (e.g. 00:00:06:00); "
                              "set it, or set optimizer.schedule_to: max_epochs")
        return timer.time_elapsed() + timer.time_remaining()

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


def load_weights(network: torch.nn.Module, checkpoint: dict, strict: bool, prefix: str = "") -> None:
    """A checkpoint's weights into ``network``: all of them, or those under ``prefix`` (stripped)."""
    state = checkpoint["state_dict"]
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    network.load_state_dict(state, strict=strict)


def load_checkpoint(model: SummarizerBase, datamodule, ckpt_path: Optional[str],
                    device: Optional[torch.device] = None, precision: str = "32-true") -> None:
    """Outside a Trainer (export, serve): build ``model`` on ``device`` for ``precision`` with the
    training vocabulary (the DataModule fixes its processor's tags from the training file), then
    verify and load the checkpoint's weights; the one place that does this besides Lightning."""
    checkpoint = read_checkpoint(ckpt_path) if ckpt_path else None
    if checkpoint is not None:  # without a training file, its tags are the vocabulary (as for predict)
        datamodule.use_checkpoint_tags((checkpoint.get("lightning_summ") or {}).get("tags"))
    datamodule.fit_processor()
    model.inference_device, model.inference_precision = device or torch.device("cpu"), precision
    model.configure_model()
    if checkpoint is not None:
        model.on_load_checkpoint(checkpoint)
        load_weights(model, checkpoint, model.strict_loading)
