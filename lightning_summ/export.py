"""Export a trained checkpoint as a directory that ``transformers``/``peft`` load directly.

* seq2seq or fully fine-tuned models: ``save_pretrained`` of the whole model + tokenizer;
* LoRA/QLoRA: the peft adapter (``adapter_config.json`` + ``adapter_model.safetensors``, MBs) + the
  tokenizer, which holds the added ``#Tag#`` tokens: load the base, ``resize_token_embeddings(len(tokenizer))``,
  then ``PeftModel.from_pretrained(base, dir)``;
* ``merge``: LoRA folded into the base weights, saved as a plain model. Merging into a 4-bit base
  would round the result to 4 bits, so that needs the base loaded unquantized
  (``--model.init_args.quantization null``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from typing import Optional

import torch

from lightning_summ.console import say
from lightning_summ.errors import ConfigError
from lightning_summ.models.base import load_checkpoint


def export_checkpoint(model, datamodule, ckpt_path: str, output_dir: str, merge: bool = False,
                      device: Optional[torch.device] = None, precision: str = "32-true") -> Path:
    lora = getattr(model, "lora", None) is not None
    if merge and getattr(model, "quantization", None) is not None:
        raise ConfigError("merging LoRA into a 4-bit base would quantize the merged weights; export with "
                         "--model.init_args.quantization null to load the base unquantized")
    out = Path(output_dir)
    if out.exists():
        raise ConfigError(f"--output_dir {out} exists; choose a new output_dir")
    load_checkpoint(model, datamodule, ckpt_path, device=device, precision=precision)
    network = model.model.merge_and_unload() if (lora and merge) else model.model
    # Written beside the target and renamed at the end: no half-exported directory on failure.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        network.save_pretrained(tmp)
        model.tokenizer.save_pretrained(tmp)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    kind = "merged model" if merge else "LoRA adapter" if lora else "model"
    say(f"Exported the {kind} to {out}")
    return out
