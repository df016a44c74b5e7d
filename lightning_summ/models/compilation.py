"""``model.compile``: regional ``torch.compile`` of the network's repeated blocks for training steps.

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
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from lightning_summ.errors import ConfigError


AUTO = "auto"  # inductor when training on CUDA, eager elsewhere (resolved by resolve_auto)


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

    def __init__(self, network: torch.nn.Module, backend: str = "inductor", context=None):
        self.blocks, self.context = repeated_blocks(network), context
        for block in self.blocks:
            # What nn.Module.compile does (nn.Module.__call__ runs _compiled_call_impl when it is
            # set), behind a check of the mode so that evaluation keeps the eager block.
            call = block._call_impl if context is None else _within(context, block._call_impl)
            block._compiled_call_impl = _training_only(block, torch.compile(call, backend=backend))

    def __len__(self) -> int:
        return len(self.blocks)


def _within(context, call):
    """``call`` inside ``context()``, traced with it: a context that picks kernels (``sdpa_kernel``) is then
    part of the compiled graph, whose cache key differs from a graph traced without it (the on-disk
    AOTAutograd cache keys a graph by its code, not by the SDPA settings it was traced under)."""
    def within(*args, **kwargs):
        with context():
            return call(*args, **kwargs)
    return within


def _training_only(block: torch.nn.Module, compiled):
    def call(*args, **kwargs):
        return compiled(*args, **kwargs) if block.training else block._call_impl(*args, **kwargs)
    return call
