"""``quantization.dequantize_for_inference``: QLoRA decoding on a dequantized copy of the base.

A 4-bit base layer dequantizes its weight again for every matmul, and decoding runs hundreds of
small matmuls per token: QLoRA greedy generation measured 1.07x HF on the H200 with the 4-bit base,
1.79x with the dequantized base and merged adapters (``bench/NOTES.md``).
For validate/test/predict outside ``fit`` (and ``serve``), every ``bitsandbytes`` 4-bit linear is
replaced by a linear holding its weight dequantized into the compute dtype — the values the 4-bit
matmul computes with, so the same outputs up to the matmul's rounding — if the free GPU memory of
each device holds its copies. With ``model.merge_adapters_for_inference`` each LoRA layer's update
is also added to its copy (in fp32, rounded once) and peft runs the merged base alone, as for a bf16
model; otherwise the LoRA layers around the copies are untouched. The 4-bit layers (and unmerged
adapters) are put back when the stage ends.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Optional

import torch

from lightning_summ.console import say

MARGIN_BYTES = 2 << 30  # left free on each device for activations and the key/value cache


class DequantizedLinear(torch.nn.Linear):
    """A 4-bit linear's weight in its compute dtype, with the 4-bit layer's casts: the input is
    computed in that dtype and the output returned in the input's dtype (as ``Linear4bit`` does),
    so the layer works with or without autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype)).to(x.dtype)


def four_bit_linears(network: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.nn.Module]]:
    """``(parent, attribute, layer)`` for every bitsandbytes 4-bit linear (peft's ``base_layer`` included)."""
    import bitsandbytes as bnb

    return [(parent, name, child) for parent in network.modules() for name, child in parent.named_children()
            if isinstance(child, bnb.nn.Linear4bit)]


def _compute_dtype(layer: torch.nn.Module) -> torch.dtype:
    return layer.compute_dtype or torch.float32


def dequantized_copy(layer: torch.nn.Module) -> DequantizedLinear:
    from bitsandbytes.functional import dequantize_4bit

    dtype = _compute_dtype(layer)
    # dequantized straight into the compute dtype, as the 4-bit matmul does (not into the dtype the
    # weights were loaded in, whose rounding the matmul never applies)
    state = copy.copy(layer.weight.quant_state)
    state.dtype = dtype
    weight = dequantize_4bit(layer.weight.data, state)
    linear = DequantizedLinear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                               device=weight.device, dtype=dtype)
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    if layer.bias is not None:
        linear.bias = torch.nn.Parameter(layer.bias.detach().to(dtype), requires_grad=False)
    return linear


def free_bytes(device: torch.device) -> Optional[int]:
    """Memory a new tensor can get on ``device``: free plus what PyTorch's cache holds unused; None = no limit known."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def _too_big(layers) -> Optional[str]:
    """Why the copies do not fit (the first device short of memory), or None."""
    needed: dict[torch.device, int] = defaultdict(int)
    for _, _, layer in layers:
        needed[layer.weight.device] += layer.in_features * layer.out_features * _compute_dtype(layer).itemsize
    for device, size in needed.items():
        free = free_bytes(device)
        if free is not None and size + MARGIN_BYTES > free:
            return (f"the dequantized base needs {size / 2**30:.1f} GiB on {device} (+ {MARGIN_BYTES >> 30} GiB "
                    f"margin), {free / 2**30:.1f} GiB are free")
    return None


class DequantizedBase:
    """Swaps a network's 4-bit linears for dequantized copies, and back."""

    def __init__(self):
        self._swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
        self._merged: list[tuple[torch.nn.Module, list[str]]] = []  # (LoRA layer, adapters merged into its copy)

    def apply(self, network: torch.nn.Module, merge_adapters: bool = False) -> bool:
        """Dequantize when the copies fit in the free memory of each layer's device (and merge the
        adapters into the copies if asked); False if they do not fit."""
        layers = four_bit_linears(network)
        if not layers or self._swapped:
            return bool(self._swapped)
        if any(getattr(layer.weight.quant_state, "packing_format_for_cpu", False) for _, _, layer in layers):
            # bitsandbytes' CPU inference kernel has repacked these weights in a layout of its own
            return self._decline("the 4-bit weights are in bitsandbytes' CPU inference layout")
        reason = _too_big(layers)
        if reason:
            return self._decline(reason)
        copies = [dequantized_copy(layer) for _, _, layer in layers]  # all made before any swap (an OOM swaps none)
        for (parent, name, layer), linear in zip(layers, copies):
            setattr(parent, name, linear)
            self._swapped.append((parent, name, layer))
        if merge_adapters:
            try:
                self._merge_adapters(network)
            except BaseException:  # e.g. out of memory in the fp32 sum: put the 4-bit layers back
                self.restore()
                raise
        return True

    def _merge_adapters(self, network: torch.nn.Module) -> None:
        """Add each LoRA layer's update to its dequantized copy (in fp32, rounded once) and mark the
        layer merged, so peft's forward runs the copy alone. peft runs only the base of a layer marked
        merged, so a layer is merged whole or not at all: skipped when one of its active adapters is
        merged already or is not plain LoRA (a DoRA-style variant, a LoRA bias)."""
        from peft.tuners.lora import LoraLayer

        for module in network.modules():
            if not (isinstance(module, LoraLayer) and isinstance(module.get_base_layer(), DequantizedLinear)):
                continue
            adapters = [a for a in module.active_adapters if a in module.lora_A]
            if not adapters or module.merged_adapters or any(
                    a in module.lora_variant or module.lora_bias.get(a, False) for a in adapters):
                continue
            base = module.get_base_layer()
            with torch.no_grad():
                update = sum(module.get_delta_weight(a).float() for a in adapters)
                base.weight.copy_(base.weight.float() + update)
            module.merged_adapters.extend(adapters)
            self._merged.append((module, adapters))

    @staticmethod
    def _decline(reason: str) -> bool:
        say(f"quantization.dequantize_for_inference: {reason}: decoding with the 4-bit base")
        return False

    def restore(self) -> None:
        try:
            for module, adapters in self._merged:  # the updates lived in the copies, which are dropped
                module.merged_adapters[:] = [a for a in module.merged_adapters if a not in adapters]
        finally:  # the 4-bit layers go back whatever happened to the marks
            self._merged.clear()
            for parent, name, layer in self._swapped:
                setattr(parent, name, layer)
            self._swapped.clear()
