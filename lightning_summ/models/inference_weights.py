"""The weights a LoRA/QLoRA summarizer decodes with outside ``fit``.

``model.merge_adapters_for_inference`` merges each network's adapters into its base weights (peft
``merge_adapter``); ``quantization.dequantize_for_inference`` swaps a QLoRA base's 4-bit linears for
dequantized copies (``models.dequantize``), into which the adapters are merged when both are set.
The summarizer enters them at the start of validate/test/predict (never during ``fit``: merging and
unmerging at every validation would drift the base weights, and the copies cost memory) and in
``serve``, and leaves them when the stage ends.
"""

from __future__ import annotations

from typing import Optional

import torch
from peft import PeftModel

from lightning_summ.models.dequantize import DequantizedBase
from lightning_summ.models.settings import QuantizationSettings


class InferenceWeights:
    """Merged adapters and/or a dequantized base for a set of networks (the model and its
    soft-voting members): entered at the start of each inference stage (entering again is a no-op)
    and left at its end."""

    def __init__(self, merge_adapters: bool, quantization: Optional[QuantizationSettings]):
        self.merge_adapters, self.quantized = merge_adapters, quantization is not None
        self.dequantize = self.quantized and quantization.dequantize_for_inference
        self.merged: list[torch.nn.Module] = []  # networks whose adapters peft merged
        self.dequantized: list[DequantizedBase] = []

    def enter(self, networks: list[torch.nn.Module]) -> None:
        """Each network as the settings ask (each dequantization checks the memory left after the last)."""
        if not self.quantized:
            for network in networks:  # a network without adapters (lora: null) has nothing to merge
                if self.merge_adapters and isinstance(network, PeftModel) and network not in self.merged:
                    self.merged.append(network)  # first: a merge that fails half-way is still undone by leave()
                    network.merge_adapter()
        elif self.dequantize and not self.dequantized:
            for network in networks:  # adapters merged into the dequantized copies
                swap = DequantizedBase()
                swap.apply(network, merge_adapters=self.merge_adapters)
                self.dequantized.append(swap)

    def leave(self) -> None:
        for network in self.merged:
            network.unmerge_adapter()
        self.merged.clear()
        for swap in self.dequantized:
            swap.restore()
        self.dequantized.clear()
