"""``model.compile``: ``torch.compile`` of training steps, of the network's repeated blocks or of the whole loss.

Each transformer block (the classes a transformers model lists in ``_no_split_modules``: a BART
encoder/decoder layer, a Qwen3/Llama decoder layer with its LoRA linears inside) is compiled in
place with ``nn.Module.compile``. Compiling the blocks instead of the whole model is what torchtune
and PyTorch's "regional compilation" recipe do: one block's graph is traced once and reused by
every layer of that class, compile time is seconds rather than minutes, and the Python around the
blocks (masks, embeddings, the loss) stays eager, so HF's data-dependent code causes no graph breaks
inside the compiled part. Shapes are dynamic after the second distinct one (torch's default), so
token-budget batches and ``pad_to_multiple_of`` lengths do not recompile without end.

The compiled blocks run only while they are in training mode: validation and generation
(``eval()``) use the eager blocks, where a growing key/value cache would make a new shape at
every step (``generation.static_cache`` is the compiled path for decoding). The first steps pay
the compile (``SpeedMonitor`` reports them apart as ``train_warmup``), so it pays when batch shapes
are few (``data.pad_to_multiple_of``, packing with a token budget); loss and gradients are the
eager ones up to fp rounding. ``auto`` compiles with inductor when training on CUDA only: on a
CPU, inductor's C++ compile of every block costs more than a short run gains.

``model.compile_scope: step`` compiles the whole loss computation of a training step instead
(embeddings, masks, every block, the head and the cross-entropy; the backward by AOTAutograd).
HF's BART traces as one graph on transformers 5.24, but on 5.17 its tensor-valued layer-drop check
breaks the graph at every layer (0.61x eager on the H200: ``bench/NOTES.md``).
``model.compile_mode: reduce-overhead`` (or ``max-autotune``) makes inductor replay each compiled
graph as a CUDA graph: with the blocks, KoBART's steady step at batch 32 went from 60 to 29 ms on
the H200, but each new batch shape records a graph (0.2-0.8 s), so it pays on long runs with few
shapes (``data.pad_to_multiple_of``). A graph's outputs are overwritten by its next replay, so the
step's loss is copied out; gradient accumulation (a micro-batch's gradients would live in memory
the next replay overwrites) and gradient checkpointing (not checked on a GPU) are refused.
"""

from __future__ import annotations

import types
from typing import Optional, Union

import torch

from lightning_summ.errors import ConfigError


AUTO = "auto"  # inductor when training on CUDA, eager elsewhere (resolved by resolve_auto)
SCOPES = ("blocks", "step")  # model.compile_scope
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's modes


def compile_backend(setting: Union[bool, str]) -> Optional[str]:
    """``model.compile``: false = eager, true = inductor (torch's default), ``auto`` = inductor when
    training on a CUDA device (where it was measured to pay) and eager elsewhere, or a backend's name."""
    if setting is False:
        return None
    if setting == AUTO:
        return AUTO
    backend = "inductor" if setting is True else setting
    if backend not in torch._dynamo.list_backends(exclude_tags=()):  # debugging backends (aot_eager...) included
        shown = [*torch._dynamo.list_backends(), "aot_eager", "eager"]  # not the testing-only ones
        raise ConfigError(f"model.compile must be true, false, auto or a torch.compile backend ({', '.join(shown)}), "
                          f"got {setting!r}")
    return backend


def check_compile_settings(backend: Optional[str], scope: str, mode: Optional[str]) -> None:
    """``model.compile_scope`` and ``model.compile_mode`` against ``model.compile`` (one-line errors)."""
    if scope not in SCOPES:
        raise ConfigError(f"model.compile_scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if mode is None:
        return
    if mode not in MODES:
        raise ConfigError(f"model.compile_mode must be null or one of {', '.join(MODES)}, got {mode!r}")
    if backend not in ("inductor", AUTO):  # torch.compile's modes are inductor's
        raise ConfigError(f"model.compile_mode {mode!r} is an inductor mode: set model.compile to true or auto "
                          f"(it is {backend or False!r})")


def uses_cuda_graphs(backend: Optional[str], mode: Optional[str]) -> bool:
    """Whether the compiled code replays CUDA graphs (inductor's CUDA-graph modes, dynamo's cudagraphs backend)."""
    return backend == "cudagraphs" or (backend == "inductor" and mode in ("reduce-overhead", "max-autotune"))


def resolve_auto(backend: Optional[str], device_type: Optional[str]) -> Optional[str]:
    """The backend to compile with on the training device: ``auto`` is inductor on CUDA only (on a
    CPU, inductor's C++ compile of every block costs more than a short run gains; not measured to pay)."""
    if backend != AUTO:
        return backend
    return "inductor" if device_type == "cuda" else None


def repeated_blocks(network: torch.nn.Module) -> list[torch.nn.Module]:
    """The network's transformer blocks, found by the class names it declares in ``_no_split_modules``."""
    lm = network.get_base_model() if hasattr(network, "get_base_model") else network  # a peft model
    names = set(getattr(lm, "_no_split_modules", None) or ())
    blocks = [m for m in network.modules() if type(m).__name__ in names]
    if not blocks:
        raise ConfigError(f"model.compile: {type(lm).__name__} declares no repeated blocks (_no_split_modules) "
                          "to compile; set model.compile to false")
    return blocks


class CompiledBlocks:
    """The compiled blocks of one network; each runs compiled while it is in training mode, inside
    ``context()`` when one is given (the SDPA kernels training may use, traced into the graph).

    The mode is read at every call, not switched in ``train()``/``eval()``: Lightning's loops
    restore each submodule's ``training`` flag directly after validation.
    """

    def __init__(self, network: torch.nn.Module, backend: str = "inductor", context=None,
                 mode: Optional[str] = None):
        self.blocks, self.context = repeated_blocks(network), context
        _allow_side_effects_under_checkpointing()
        codes: dict[type, types.CodeType] = {}
        for block in self.blocks:
            # What nn.Module.compile does (nn.Module.__call__ runs _compiled_call_impl when it is
            # set), behind a check of the mode so that evaluation keeps the eager block. Each block
            # class gets a function of its own: dynamo keeps compiled graphs, and its limit of 8
            # recompiles, per code object, and a BART encoder and decoder layer sharing one hit that
            # limit on the H200 within 5 steps (each class x each new batch size), then ran eager.
            call = _per_class(_within(context, block._call_impl), type(block), codes)
            block._compiled_call_impl = _training_only(block, torch.compile(call, backend=backend, mode=mode))

    def __len__(self) -> int:
        return len(self.blocks)


class CompiledStep:
    """A training step's whole loss computation (``loss_fn(batch) -> loss``), compiled as one region
    (``model.compile_scope: step``); called with the batch's tensors only, so that its file names and
    references (Python lists) are neither traced nor guarded on."""

    def __init__(self, loss_fn, backend: str = "inductor", context=None, mode: Optional[str] = None):
        _allow_side_effects_under_checkpointing()
        self.compiled = torch.compile(_within(context, loss_fn), backend=backend, mode=mode)
        self.cuda_graphs = uses_cuda_graphs(backend, mode)

    def __call__(self, batch: dict) -> torch.Tensor:
        loss = self.compiled({k: v for k, v in batch.items() if isinstance(v, torch.Tensor)})
        # A CUDA graph's output is overwritten by its next replay: what is logged and kept is a copy.
        return loss.clone() if self.cuda_graphs else loss


def _allow_side_effects_under_checkpointing() -> None:
    """Let dynamo trace a checkpointed block whose forward sets Python state. From transformers 5.25
    on, attention layers run through the ``kernels`` package, whose forward sets a context variable:
    inside gradient checkpointing's region dynamo refuses that side effect and breaks the graph, so
    every compiled block ran eager (found on the CPU; the GPU image's 5.17 has no such layer). The
    flag only skips replaying that Python state in the recomputation, whose tensors are the traced
    graph's; torchtitan and accelerate's regional compilation set it the same way. Process-wide (a
    dynamo setting), set whenever something is compiled: dynamo reads it only when it traces a
    checkpointed region, so networks that do not checkpoint are unaffected."""
    if hasattr(torch._dynamo.config, "skip_fwd_side_effects_in_bwd_under_checkpoint"):
        torch._dynamo.config.skip_fwd_side_effects_in_bwd_under_checkpoint = True


def _within(context, call):
    """``call`` inside ``context()``, traced with it: a context that picks kernels (``sdpa_kernel``) is then
    part of the compiled graph, whose cache key differs from a graph traced without it (the on-disk
    AOTAutograd cache keys a graph by its code, not by the SDPA settings it was traced under). Without
    a context, a plain function all the same (``_per_class`` copies a function's code object)."""
    if context is None:
        def within(*args, **kwargs):
            return call(*args, **kwargs)
        return within

    def within(*args, **kwargs):
        with context():
            return call(*args, **kwargs)
    return within


def _per_class(function, cls: type, codes: dict):
    """``function`` with the code object of the block class ``cls`` (made once, kept in ``codes``):
    dynamo's compiled graphs, their guards and the recompile limit belong to a code object, so every
    layer of a class shares one, and another class (a decoder layer beside an encoder layer) has its own."""
    code = codes.setdefault(cls, function.__code__.replace(co_name=f"{function.__name__}_{cls.__name__}"))
    return types.FunctionType(code, function.__globals__, code.co_name, function.__defaults__, function.__closure__)


def _training_only(block: torch.nn.Module, compiled):
    def call(*args, **kwargs):
        return compiled(*args, **kwargs) if block.training else block._call_impl(*args, **kwargs)
    return call
