"""``quantization.dequantize_for_inference``: QLoRA decoding on a dequantized copy of the base.

A 4-bit base layer dequantizes its weight again for every matmul; decoding does hundreds of small
matmuls per token, so that dequantisation is most of a QLoRA model's generation time (QLoRA
generation was only 1.07x HF on the H200, against 2-4x for bf16 models). For validate/test/predict
outside ``fit``, every ``bitsandbytes`` 4-bit linear is replaced by a plain linear holding its
dequantized weight in the compute dtype (the same values the 4-bit matmul computes with, so the
same outputs up to the matmul's rounding), if the free GPU memory holds those copies; the LoRA
layers around them are untouched. The 4-bit layers are put back when the stage ends.
"""

from __future__ import annotations

import copy

import torch

from lightning_summ.console import say

MARGIN_BYTES = 2 << 30  # left free for activations and the key/value cache


def four_bit_linears(network: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.nn.Module]]:
    """``(parent, attribute, layer)`` for every bitsandbytes 4-bit linear (peft's ``base_layer`` included)."""
    import bitsandbytes as bnb

    return [(parent, name, child) for parent in network.modules() for name, child in parent.named_children()
            if isinstance(child, bnb.nn.Linear4bit)]


def dequantized_copy(layer: torch.nn.Module) -> torch.nn.Linear:
    from bitsandbytes.functional import dequantize_4bit

    dtype = layer.compute_dtype or torch.float32
    # dequantized straight into the compute dtype, as the 4-bit matmul does (not into the dtype the
    # weights were loaded in, whose rounding the matmul never applies)
    state = copy.copy(layer.weight.quant_state)
    state.dtype = dtype
    weight = dequantize_4bit(layer.weight.data, state)
    linear = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                             device=weight.device, dtype=dtype)
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    if layer.bias is not None:
        linear.bias = torch.nn.Parameter(layer.bias.detach().to(dtype), requires_grad=False)
    return linear


class DequantizedBase:
    """Swaps a network's 4-bit linears for dequantized copies, and back."""

    def __init__(self):
        self._swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []

    @property
    def active(self) -> bool:
        return bool(self._swapped)

    def apply(self, network: torch.nn.Module) -> bool:
        """Dequantize when the copies fit in the free memory of the layers' device; False if they do not."""
        layers = four_bit_linears(network)
        if not layers or self.active:
            return self.active
        if any(getattr(layer.weight.quant_state, "packing_format_for_cpu", False) for _, _, layer in layers):
            # bitsandbytes' CPU inference kernel has repacked these weights in a layout of its own
            say("quantization.dequantize_for_inference: the 4-bit weights are in bitsandbytes' CPU inference "
                "layout: decoding with the 4-bit base")
            return False
        device = layers[0][2].weight.device
        itemsize = torch.empty((), dtype=layers[0][2].compute_dtype or torch.float32).element_size()
        needed = sum(layer.in_features * layer.out_features * itemsize for _, _, layer in layers)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if needed + MARGIN_BYTES > free:
                say(f"quantization.dequantize_for_inference: the dequantized base needs {needed / 2**30:.1f} GiB "
                    f"(+ {MARGIN_BYTES >> 30} GiB margin), {free / 2**30:.1f} GiB are free: decoding with the 4-bit base")
                return False
        for parent, name, layer in layers:
            setattr(parent, name, dequantized_copy(layer))
            self._swapped.append((parent, name, layer))
        return True

    def restore(self) -> None:
        for parent, name, layer in self._swapped:
            setattr(parent, name, layer)
        self._swapped.clear()
