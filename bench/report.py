"""The rows of one ``speed_vs_hf.py`` group and the rates each row reports.

``Report`` keeps a group's rows and rewrites its JSON and Markdown table after every row, so a command
cut short still leaves its finished rows; ``attempt`` records one row (a failure becomes that row's
``error``). The rate helpers turn a side's measurement into TFLOP/s and MFU (``with_rates``, from
``linear_params``' matmul weights), the first batch's share (``first_batch``) and how many texts the
two sides share (``same_texts``).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch

import common  # noqa: F401 - before lightning_summ: puts this checkout's package first on sys.path
from lightning_summ.io import read_submission
from lightning_summ.outputs import atomic_write

PEAK_TFLOPS = 790.0  # bf16 dense matmul measured on this H200 (../.library/device/KINDS.md)
SPEED_COLUMNS = ("| workload | setting | ours samples/s | HF samples/s | ratio | ours tokens/s | HF tokens/s "
                 "| ours peak GB | HF peak GB | ours MFU | HF MFU | same texts |")


class Report:
    """Rows of one group, saved (JSON + Markdown) after every run."""

    def __init__(self, args):
        import lightning
        import peft
        import transformers
        self.path = Path(args.out) / f"speed_vs_hf_{args.group}"
        self.data = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                     "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                  "peft": peft.__version__, "lightning": lightning.__version__},
                     "peak_tflops": PEAK_TFLOPS, "args": vars(args), "rows": []}

    def heading(self) -> str:
        """The table's first line: when, on which GPU, with which library versions."""
        return f"{self.data['date']} on {self.data['gpu']}, {self.data['versions']}"

    def save(self, lines: list[str]) -> None:
        """The JSON with every row so far, and ``lines`` as the Markdown file; each written atomically,
        so a command killed at its time limit leaves the last complete tables."""
        with atomic_write(self.path.with_suffix(".json")) as f:
            f.write(json.dumps(self.data, indent=2))
        with atomic_write(self.path.with_suffix(".md")) as f:
            f.write("\n".join(lines) + "\n")

    def add(self, row: dict) -> None:
        self.data["rows"].append(row)
        lines = [self.heading(), "", SPEED_COLUMNS, "|---" * 12 + "|"]
        for r in self.data["rows"]:
            o, h = r.get("ours", {}), r.get("hf", {})
            note = f" ({r.get('error') or r.get('skipped')})" if r.get("error") or r.get("skipped") else ""
            losses, hf_losses = o.get("train_loss") or {}, h.get("train_loss") or {}
            if losses.get("nonfinite"):
                note += f" (ours: {losses['nonfinite']} of {losses['batches']} training losses NaN/inf)"
            if hf_losses.get("finite") is False:
                note += " (HF: mean training loss NaN/inf)"
            cells = [r["workload"], r["setting"] + note, o.get("samples_per_s"), h.get("samples_per_s"), r.get("ratio"),
                     o.get("tokens_per_s"), h.get("tokens_per_s"), o.get("peak_mem_gb"), h.get("peak_mem_gb"),
                     o.get("mfu"), h.get("mfu"), r.get("same_texts", "")]
            lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
        self.save(lines)
        print(lines[-1], flush=True)


def attempt(report: Report, workload: str, setting: str, measure) -> None:
    """One row: ``measure()`` returns the row's fields; a failure is recorded as that row and the group goes on."""
    try:
        row = measure()
    except Exception as error:  # noqa: BLE001 - a benchmark row that fails is a result too
        import traceback
        traceback.print_exc()
        row = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    report.add({"workload": workload, "setting": setting, **row})


def linear_params(config: dict, prefix_groups: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Weights of every ``nn.Linear`` (the matmul FLOPs: 2 per weight per token), grouped by name prefix."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    spec = dict(config)
    cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
    auto = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(cfg)
    counts = dict.fromkeys(prefix_groups, 0)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            group = next(g for g, prefixes in prefix_groups.items() if name.startswith(prefixes) or not prefixes)
            counts[group] += module.weight.numel()
    return counts


def with_rates(result: dict, flops_per_sample: float = 0.0, flops_per_token: float = 0.0) -> dict:
    """TFLOP/s and MFU from the samples/s (same-size work per sample) or the measured tokens/s
    (training rows of varying size, e.g. token-budget batches)."""
    result = {k: v for k, v in result.items() if k not in ("texts", "predictions", "batches")}
    flops = result["samples_per_s"] * flops_per_sample + result["tokens_per_s"] * flops_per_token
    result["tflops"] = round(flops / 1e12, 1)
    result["mfu"] = round(result["tflops"] / PEAK_TFLOPS, 4)
    return result


def same_texts(ours: dict, hf: dict) -> str:
    """How many of our texts (the predictions file) equal HF's, row by row: ``equal/total``."""
    mine = list(read_submission(ours["predictions"]).values())
    equal = sum(a == b for a, b in zip(mine, hf["texts"]))
    return f"{equal}/{len(hf['texts'])}" + ("" if len(mine) == len(hf["texts"]) else f" (ours has {len(mine)} rows)")


def first_batch(result: dict) -> dict:
    """The first batch's seconds and the rate after it (the cold start apart), from per-batch timings."""
    batches = result.get("batches") or []
    if len(batches) < 2:
        return {}
    n, s = batches[0]
    rest = (result["samples"] - n) / (result["seconds"] - s)
    return {"first_batch_s": s, "samples_per_s_after_first_batch": round(rest, 3)}


def forced_tokens_per_s(new_tokens: int, *results: dict) -> None:
    """Generation is forced to exactly ``new_tokens`` per sample: tokens/s follows from samples/s."""
    for r in results:
        r["tokens_per_s"] = round(r["samples_per_s"] * new_tokens, 1)
