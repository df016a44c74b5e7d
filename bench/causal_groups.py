"""``speed_vs_hf.py --group causal-train`` and ``--group causal-generate``: workloads 3 (LoRA / QLoRA
fine-tuning) and 4 (generation) on the Qwen3-4B architecture with the shipped configs.

Both sides load one saved random-weight model (``--model_dir``, made once). Training rows run the
shipped settings on both sides, then HF's padding-free collator (``--hf_flatten``) and ours with each
of ``--causal_options``; generation rows follow ``--gen_plan`` (config, beams, batch, cache, inference
options), HF at the common batch size, until ``--time_budget`` runs out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

import hf_side
import ours_side
from causal_fit import materialize as save_random_model
from common import REPO
from lightning_summ.io import read_examples
from report import Report, attempt, first_batch, forced_tokens_per_s, linear_params, same_texts, with_rates

TINY_QWEN3 = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "tie_word_embeddings": True,
              "vocab_size": 4000}
CAUSAL_CONFIGS = {"qlora": "configs/qwen3-4b-qlora.yaml", "lora-bf16": "configs/qwen3-4b-lora-bf16.yaml"}
# Our inference options for the causal generation rows (``--gen_plan`` row's fifth field, joined by '+').
# The shipped Qwen3 configs turn merge (and, for QLoRA, dequant) on since 2026-12-02: "unmerged" and
# "4bit" give the rows without them; "unpacked" turns off generation.packed_gqa (on by default since 2026-12-02).
INFERENCE_OPTIONS = {"merge": ["--model.init_args.merge_adapters_for_inference=true"],
                     "dequant": ["--model.init_args.quantization.dequantize_for_inference=true"],
                     "unmerged": ["--model.init_args.merge_adapters_for_inference=false"],
                     "4bit": ["--model.init_args.merge_adapters_for_inference=false",
                              "--model.init_args.quantization.dequantize_for_inference=false"],
                     "unpacked": ["--model.init_args.generation.packed_gqa=false"]}


# The shipped effective batch in one micro-batch (8 x 2 -> 16 x 1): the same examples per optimizer
# step, half the host work per example (training is host-bound at these batches: bench/NOTES.md).
MICRO_BATCH = "micro-batch"


def causal_options(args) -> dict[str, list[str]]:
    """Our speed options under test for LoRA/QLoRA training, by name (``--causal_options``)."""
    packing, compile_ = ["--data.packing=true"], ["--model.init_args.compile=true"]
    chunked = [f"--model.init_args.loss_chunk_size={args.loss_chunk_size}"]
    tokens = [f"--data.max_tokens_per_batch={args.causal_token_budget}", "--trainer.accumulate_grad_batches=1"]
    budget = tokens + ["--model.init_args.gradient_checkpointing=true"]
    return {"packing": packing, "chunked-loss": chunked, "compile": compile_, "all": packing + chunked + compile_,
            "all+token-budget": packing + chunked + compile_ + budget, "token-budget": budget,
            # the budget row without recomputation: the H200's memory may hold a 32k-token batch's activations
            "all+token-budget-nockpt": packing + chunked + compile_ + tokens
            + ["--model.init_args.gradient_checkpointing=false"],
            # dynamo's cudagraphs backend on the blocks: CUDA graphs instead of per-kernel launches
            "cudagraphs": ["--model.init_args.compile=cudagraphs"],
            MICRO_BATCH: ["--trainer.accumulate_grad_batches=1"]}  # with the batch set in _train_rows



CONTRADICTORY = ({"merge", "unmerged"}, {"merge", "4bit"}, {"dequant", "4bit"})


def parse_gen_row(row: str) -> tuple[str, int, int, bool, tuple[str, ...]]:
    """``config:beams:batch:static|dynamic[:options]`` -> (config, beams, batch, static, options);
    a malformed row raises ``ArgumentTypeError`` (the parser's one-line error)."""
    def refuse(why: str):
        return argparse.ArgumentTypeError(f"--gen_plan row '{row}': {why}")

    parts = row.split(":")
    if len(parts) not in (4, 5) or parts[0] not in CAUSAL_CONFIGS or parts[3] not in ("static", "dynamic"):
        raise refuse(f"use config:beams:batch:static|dynamic[:options] with config in {sorted(CAUSAL_CONFIGS)}")
    try:
        beams, batch = int(parts[1]), int(parts[2])
    except ValueError:
        raise refuse("beams and batch must be whole numbers") from None
    if beams < 1 or batch < 1:
        raise refuse("beams and batch must be >= 1")
    options = tuple(parts[4].split("+")) if len(parts) == 5 else ()
    unknown = [o for o in options if o not in INFERENCE_OPTIONS]
    if unknown:
        raise refuse(f"unknown options {unknown}; use {sorted(INFERENCE_OPTIONS)} joined by '+'")
    clash = next((pair for pair in CONTRADICTORY if pair <= set(options)), None)
    if clash:
        raise refuse(f"options {sorted(clash)} contradict each other")
    if {"dequant", "4bit"} & set(options) and causal_settings(CAUSAL_CONFIGS[parts[0]])["quantization"] is None:
        # the override would build a default 4-bit quantization and silently load a QLoRA model
        raise refuse(f"dequant / 4bit need a quantized config; {parts[0]} is not")
    return parts[0], beams, batch, parts[3] == "static", options


def accumulation(options: tuple[str, ...], shipped: int) -> int:
    """The gradient accumulation a run uses: the options' override, else the config's (warm-up and
    timed steps are counted in optimizer steps)."""
    flag = "--trainer.accumulate_grad_batches="
    return next((int(o[len(flag):]) for o in reversed(options) if o.startswith(flag)), shipped)


def causal_settings(config: str) -> dict:
    """The shipped config's settings the HF side copies (length, LoRA, quantization, batch, accumulation)."""
    cfg = yaml.safe_load((REPO / config).read_text())
    init = cfg["model"]["init_args"]
    return {"max_length": init["max_length"], "lora": init["lora"], "quantization": init.get("quantization"),
            "gradient_checkpointing": init.get("gradient_checkpointing", False),
            "accumulate": cfg["trainer"].get("accumulate_grad_batches", 1), "batch_size": cfg["data"]["batch_size"]}


def materialize(args) -> dict:
    """A random-weight Qwen3-4B (real shapes) with our Korean tokenizer and a Qwen-style chat template."""
    spec = TINY_QWEN3 if args.tiny else json.loads((REPO / "lightning_summ/assets/architectures/qwen3-4b.json").read_text())
    if not (Path(args.model_dir) / "config.json").exists():
        save_random_model(args.tokenizer, Path(args.model_dir), spec)
    return spec


def causal_tokens(args, settings: dict, for_generation: bool, rows: str) -> float:
    """Mean tokens per sample (prompt only for generation, prompt + summary for training)."""
    formatter = hf_side.prompt_formatter(args, settings)
    lengths = [len(formatter.encode(ex.dialogue, None if for_generation else ex.summaries[0],
                                    for_generation)["input_ids"]) for ex in read_examples(rows)]
    return sum(lengths) / len(lengths)


def _train_rows(args, report: Report, name: str, per_token: float) -> None:
    """Workload 3 for one config: shipped settings on both sides, HF flattened, ours with each option
    set; each HF setting runs once and serves every row that compares with it."""
    settings = causal_settings(CAUSAL_CONFIGS[name])
    batch = settings["batch_size"]
    hf_runs = {}

    def train(option: str = "", flatten: bool = False) -> dict:
        if flatten not in hf_runs:
            hf_runs[flatten] = with_rates(hf_side.causal_train(args, settings, batch, flatten=flatten),
                                          flops_per_token=per_token)
        hf = hf_runs[flatten]
        options = tuple(causal_options(args)[option]) if option else ()
        ours_batch = batch * settings["accumulate"] if option == MICRO_BATCH else batch
        ours = ours_side.causal(args, CAUSAL_CONFIGS[name], "train", ours_batch, options=options,
                                accumulate=accumulation(options, settings["accumulate"]))
        ours = with_rates(ours, flops_per_token=per_token)
        return {"ours": ours, "hf": hf, "ratio": round(ours["samples_per_s"] / hf["samples_per_s"], 2)}

    workload = f"3 Qwen3-4B {name} fine-tuning"
    shipped = (f"{CAUSAL_CONFIGS[name]}: batch {batch} x {settings['accumulate']}, "
               f"checkpointing {settings['gradient_checkpointing']}")
    attempt(report, workload, shipped, train)
    if args.hf_flatten:
        attempt(report, workload, "HF + DataCollatorWithFlattening (padding-free, use_cache off); ours shipped",
                lambda: train(flatten=True))
    for option in args.causal_options:
        flags = " ".join(causal_options(args)[option])
        if option == MICRO_BATCH:
            flags = f"--data.batch_size={batch * settings['accumulate']} {flags}"
        attempt(report, workload, f"ours + {option} ({flags}); HF shipped", lambda: train(option))


def causal_train(args, report: Report) -> None:
    """The causal-train group: every config of ``--variants``."""
    spec = materialize(args)
    n = sum(linear_params(spec, {"all": ()}).values())
    for name in args.variants:
        # LoRA on a frozen base: forward 2N + input gradients 2N per token (recomputation not counted).
        # MFU from the real tokens each side processed per second: a token-budget batch does not
        # hold the dataset's mean example, so samples/s x mean FLOPs per sample would be off.
        _train_rows(args, report, name, per_token=4 * n)


def causal_generate(args, report: Report) -> None:
    """The causal-generate group: one row per ``--gen_plan`` entry; rows past ``--time_budget`` seconds
    are recorded as skipped. HF runs once per (config, beams, batch), before ours."""
    spec = materialize(args)
    n = sum(linear_params(spec, {"all": ()}).values())
    start, hf_runs, prompt_tokens = time.perf_counter(), {}, {}
    for name, beams, batch, static, inference in (parse_gen_row(row) for row in args.gen_plan):
        config = CAUSAL_CONFIGS[name]
        settings = causal_settings(config)
        hf_batch = min(batch, args.eval_batch_size)  # HF is measured at the common batch size only
        workload = f"4 Qwen3-4B ({name}) generation"
        setting = (f"{'greedy' if beams == 1 else 'beam 4'}, ours batch {batch}{', static cache' if static else ''}"
                   f"{''.join(', ' + o for o in inference)}; HF batch {hf_batch}")
        if time.perf_counter() - start > args.time_budget:
            report.add({"workload": workload, "setting": setting, "skipped": "time budget"})
            continue

        def generate() -> dict:
            if name not in prompt_tokens:
                prompt_tokens[name] = causal_tokens(args, settings, True, args.gen_data)
            flops = 2 * n * (prompt_tokens[name] + args.new_tokens * beams)
            if (name, beams, hf_batch) not in hf_runs:  # HF first: it pays the cold start a user pays
                hf_runs[name, beams, hf_batch] = hf_side.causal_generate(args, settings, hf_batch, beams)
            hf = hf_runs[name, beams, hf_batch]
            options = tuple(flag for o in inference for flag in INFERENCE_OPTIONS[o])
            ours = ours_side.causal(args, config, "generate", batch, num_beams=beams, static_cache=static,
                                    options=options)
            forced_tokens_per_s(args.new_tokens, ours, hf)
            return {"ours": with_rates(ours, flops) | first_batch(ours), "hf": with_rates(hf, flops) | first_batch(hf),
                    "ratio": round(ours["samples_per_s"] / hf["samples_per_s"], 2), "same_texts": same_texts(ours, hf)}

        attempt(report, workload, setting, generate)
