"""lightning_summ vs Hugging Face, side by side in one command (the speed issue's benchmark).

Groups of workloads (``--group``), each one device command:

* ``kobart``: 1. KoBART-architecture (BART-base, the tokenizer's ~30k vocabulary) fine-tuning,
  source 512 / target 100 tokens; 2. beam-4 generation of exactly ``--new_tokens`` tokens for
  every dialogue. HF: ``Seq2SeqTrainer`` (+ ``predict_with_generate``).
* ``causal-train``: 3. Qwen3-4B-architecture QLoRA and bf16 LoRA fine-tuning with the shipped
  configs (their batch size, accumulation, checkpointing, LoRA settings), max length 1024.
  HF: ``Trainer`` on a peft model.
* ``causal-generate``: 4. Qwen3-4B-architecture (bf16 LoRA) generation of exactly
  ``--new_tokens`` tokens, greedy and beam 4. HF: batched ``model.generate``.
* ``quality``: 5. time to quality (``bench/quality.py``): BART-base from random init trained for
  ``--budget_s`` seconds on ``--data`` (DialogSum train), beam-4 predict of ``--test``, ROUGE by
  rouge-score with stemming. Variants (``--quality_variants``): ours (the CLI), ``hf`` and
  ``hf+pad64`` / ``hf+tags`` (``Seq2SeqTrainer`` stopped by a callback), each in its own process,
  all at once with ``--concurrent``.

Models have random weights of the real architectures (same speed and memory as trained ones);
inputs are real Korean dialogues. HF runs get their documented best options (length grouping,
fused AdamW, bf16, SDPA). Training runs alternate ours/HF; each timed span starts after
``--warmup`` optimizer steps. Ours runs through the real CLI with a shipped config.
Generation rows compare each of our settings with HF at the same batch size, and say whether
the texts are identical. The JSON and Markdown table are rewritten after every run, so a
command cut short still leaves its finished rows.

    python bench/speed_vs_hf.py --group kobart --data dev.csv --tokenizer tok_dir --out results/
    python bench/speed_vs_hf.py --group kobart --tiny ... # CPU smoke test (numbers mean nothing)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import torch
import yaml

import hf_side
import ours_side
import quality
from causal_fit import materialize as save_random_model
from causal_fit import subset
from common import REPO
from lightning_summ.io import read_examples, read_submission

BART_BASE = {"model_type": "bart", "d_model": 768, "encoder_layers": 6, "decoder_layers": 6,
             "encoder_attention_heads": 12, "decoder_attention_heads": 12, "encoder_ffn_dim": 3072,
             "decoder_ffn_dim": 3072, "max_position_embeddings": 1026}
TINY_BART = {"model_type": "bart", "d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
             "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 1026}
TINY_QWEN3 = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "tie_word_embeddings": True,
              "vocab_size": 4000}
PEAK_TFLOPS = 790.0  # bf16 dense matmul measured on this H200 (../.library/device/KINDS.md)
CAUSAL_CONFIGS = {"qlora": "configs/qwen3-4b-qlora.yaml", "lora-bf16": "configs/qwen3-4b-lora-bf16.yaml"}


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

    def add(self, row: dict) -> None:
        self.data["rows"].append(row)
        self.path.with_suffix(".json").write_text(json.dumps(self.data, indent=2))
        lines = [f"{self.data['date']} on {self.data['gpu']}, {self.data['versions']}", "",
                 "| workload | setting | ours samples/s | HF samples/s | ratio | ours tokens/s | HF tokens/s "
                 "| ours peak GB | HF peak GB | ours MFU | HF MFU | same texts |", "|---" * 12 + "|"]
        for r in self.data["rows"]:
            o, h = r.get("ours", {}), r.get("hf", {})
            note = f" ({r.get('error') or r.get('skipped')})" if r.get("error") or r.get("skipped") else ""
            cells = [r["workload"], r["setting"] + note, o.get("samples_per_s"), h.get("samples_per_s"), r.get("ratio"),
                     o.get("tokens_per_s"), h.get("tokens_per_s"), o.get("peak_mem_gb"), h.get("peak_mem_gb"),
                     o.get("mfu"), h.get("mfu"), r.get("same_texts", "")]
            lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
        self.path.with_suffix(".md").write_text("\n".join(lines) + "\n")
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
    mine = list(read_submission(ours["predictions"]).values())
    equal = sum(a == b for a, b in zip(mine, hf["texts"]))
    return f"{equal}/{len(hf['texts'])}" + ("" if len(mine) == len(hf["texts"]) else f" (ours has {len(mine)} rows)")


def first_batch(result: dict) -> dict:
    batches = result.get("batches") or []
    if len(batches) < 2:
        return {}
    n, s = batches[0]
    rest = (result["samples"] - n) / (result["seconds"] - s)
    return {"first_batch_s": s, "samples_per_s_after_first_batch": round(rest, 3)}


def materialize_seq2seq(args, config: dict) -> dict:
    """One random-weight BART (the tokenizer's vocabulary plus the data's ``#Tag#`` tokens) saved to
    disk, so both sides load identical weights and can be compared text for text."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    from lightning_summ.tags import add_tags_to_tokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    add_tags_to_tokenizer(tok, hf_side.data_tags(args.data))
    spec = dict(config)
    spec.update(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=None)
    args.model_dir = str(Path(args.scratch) / "random-bart")
    torch.manual_seed(0)
    model_type = spec.pop("model_type")
    AutoModelForSeq2SeqLM.from_config(AutoConfig.for_model(model_type, **spec)).save_pretrained(args.model_dir)
    tok.save_pretrained(args.model_dir)
    return dict(spec, model_type=model_type)


def kobart(args, report: Report) -> None:
    config = TINY_BART if args.tiny else BART_BASE
    from transformers import AutoTokenizer

    spec = materialize_seq2seq(args, config)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    params = linear_params(spec, {"encoder": ("model.encoder",), "decoder": ()})
    examples = read_examples(args.data)
    src = sum(min(len(tok(ex.dialogue).input_ids), 512) for ex in examples) / len(examples)
    tgt = sum(min(len(tok(ex.summaries[0]).input_ids), 100) for ex in examples) / len(examples)
    train_flops = 6 * (params["encoder"] * src + params["decoder"] * tgt)
    gen_flops = 2 * (params["encoder"] * src + params["decoder"] * args.new_tokens * 4)

    def train() -> dict:
        runs = {"ours": [], "hf": []}
        for round_ in range(args.rounds + 1):  # round 0 warms up both sides and is not reported
            for side, fn in (("ours", ours_side.seq2seq), ("hf", hf_side.seq2seq)):
                result = fn(args, "train", args.batch_size)
                if round_:
                    runs[side].append(result)
        mean = {side: {k: sum(r[k] for r in rs) / len(rs) for k in ("samples_per_s", "tokens_per_s")} | {
            "peak_mem_gb": max(r["peak_mem_gb"] or 0 for r in rs), "rounds": [with_rates(r, train_flops) for r in rs]}
            for side, rs in runs.items()}
        return {"ours": with_rates(mean["ours"], train_flops), "hf": with_rates(mean["hf"], train_flops),
                "ratio": round(mean["ours"]["samples_per_s"] / mean["hf"]["samples_per_s"], 2)}

    hf_mean = {}

    def train_and_keep() -> dict:
        row = train()
        hf_mean.update(row["hf"])
        return row

    if "train" in args.kobart_parts:
        attempt(report, "1 KoBART fine-tuning", f"batch {args.batch_size}, bf16, mean of {args.rounds} rounds",
                train_and_keep)
    for name in args.seq2seq_options:
        def train_with(options=tuple(seq2seq_options(args)[name])) -> dict:
            ours = with_rates(ours_side.seq2seq(args, "train", args.batch_size, options=options), train_flops)
            ratio = round(ours["samples_per_s"] / hf_mean["samples_per_s"], 2) if hf_mean else None  # no HF row
            return {"ours": ours, "hf": hf_mean, "ratio": ratio}
        attempt(report, "1 KoBART fine-tuning", f"ours + {name} ({' '.join(seq2seq_options(args)[name])}); "
                f"HF batch {args.batch_size} as above", train_with)

    hf_runs = {}

    def generate(batch: int, static: bool) -> dict:
        if batch not in hf_runs:  # HF first: it pays the cold start a user pays
            hf_runs[batch] = hf_side.seq2seq(args, "generate", batch)
        hf = hf_runs[batch]
        ours = ours_side.seq2seq(args, "generate", batch, static_cache=static)
        for r in (ours, hf):
            r["tokens_per_s"] = round(r["samples_per_s"] * args.new_tokens, 1)  # forced length
        return {"ours": with_rates(ours, gen_flops) | first_batch(ours), "hf": with_rates(hf, gen_flops),
                "ratio": round(ours["samples_per_s"] / hf["samples_per_s"], 2), "same_texts": same_texts(ours, hf)}

    for batch, static in ((args.eval_batch_size, False), (args.big_eval_batch_size, False),
                          (args.big_eval_batch_size, True)) if "generate" in args.kobart_parts else ():
        attempt(report, "2 KoBART beam-4 generation", f"batch {batch}" + (", static cache" if static else ""),
                lambda: generate(batch, static))


def seq2seq_options(args) -> dict[str, list[str]]:
    """Our speed options under test for KoBART training, by name (``--seq2seq_options``)."""
    compile_ = ["--model.init_args.compile=true"]
    budget = [f"--data.max_tokens_per_batch={args.seq2seq_token_budget}"]
    return {"compile": compile_, "token-budget": budget, "all": compile_ + budget}


def causal_options(args) -> dict[str, list[str]]:
    """Our speed options under test for LoRA/QLoRA training, by name (``--causal_options``)."""
    packing, compile_ = ["--data.packing=true"], ["--model.init_args.compile=true"]
    chunked = [f"--model.init_args.loss_chunk_size={args.loss_chunk_size}"]
    budget = [f"--data.max_tokens_per_batch={args.causal_token_budget}", "--trainer.accumulate_grad_batches=1",
              "--model.init_args.gradient_checkpointing=true"]
    return {"packing": packing, "chunked-loss": chunked, "compile": compile_, "all": packing + chunked + compile_,
            "all+token-budget": packing + chunked + compile_ + budget, "token-budget": budget}


def accumulation(options: tuple[str, ...], shipped: int) -> int:
    """The gradient accumulation a run uses: the options' override, else the config's (warm-up and
    timed steps are counted in optimizer steps)."""
    flag = "--trainer.accumulate_grad_batches="
    return next((int(o[len(flag):]) for o in reversed(options) if o.startswith(flag)), shipped)


def causal_settings(config: str) -> dict:
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


def causal_train(args, report: Report) -> None:
    spec = materialize(args)
    n = sum(linear_params(spec, {"all": ()}).values())
    for name in args.variants:
        settings = causal_settings(CAUSAL_CONFIGS[name])
        # LoRA on a frozen base: forward 2N + input gradients 2N per token (recomputation not counted).
        # MFU from the real tokens each side processed per second: a token-budget batch does not
        # hold the dataset's mean example, so samples/s x mean FLOPs per sample would be off.
        per_token = 4 * n
        batch = settings["batch_size"]

        hf_runs = {}

        def train(option: str = "", flatten: bool = False) -> dict:
            if flatten not in hf_runs:
                hf_runs[flatten] = with_rates(hf_side.causal_train(args, settings, batch, flatten=flatten),
                                              flops_per_token=per_token)
            hf = hf_runs[flatten]
            options = tuple(causal_options(args)[option]) if option else ()
            ours = ours_side.causal(args, CAUSAL_CONFIGS[name], "train", batch, options=options,
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
            attempt(report, workload, f"ours + {option} ({' '.join(causal_options(args)[option])}); HF shipped",
                    lambda: train(option))


# Our inference options for the causal generation rows (``--gen_plan`` row's fifth field, joined by '+').
INFERENCE_OPTIONS = {"merge": ["--model.init_args.merge_adapters_for_inference=true"],
                     "dequant": ["--model.init_args.quantization.dequantize_for_inference=true"]}


def parse_gen_row(row: str) -> tuple[str, int, int, bool, tuple[str, ...]]:
    """``config:beams:batch:static|dynamic[:merge+dequant]`` -> (config, beams, batch, static, options)."""
    parts = row.split(":")
    if len(parts) not in (4, 5) or parts[0] not in CAUSAL_CONFIGS or parts[3] not in ("static", "dynamic"):
        raise argparse.ArgumentTypeError(f"--gen_plan row '{row}': use config:beams:batch:static|dynamic[:options] "
                                         f"with config in {sorted(CAUSAL_CONFIGS)}")
    options = tuple(parts[4].split("+")) if len(parts) == 5 else ()
    unknown = [o for o in options if o not in INFERENCE_OPTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"--gen_plan row '{row}': unknown options {unknown}; "
                                         f"use {sorted(INFERENCE_OPTIONS)} joined by '+'")
    return parts[0], int(parts[1]), int(parts[2]), parts[3] == "static", options


def causal_generate(args, report: Report) -> None:
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
            for r in (ours, hf):
                r["tokens_per_s"] = round(r["samples_per_s"] * args.new_tokens, 1)
            return {"ours": with_rates(ours, flops) | first_batch(ours), "hf": with_rates(hf, flops) | first_batch(hf),
                    "ratio": round(ours["samples_per_s"] / hf["samples_per_s"], 2), "same_texts": same_texts(ours, hf)}

        attempt(report, workload, setting, generate)


def quality_group(args, report: Report) -> None:
    """Workload 5: time to quality on DialogSum (``bench/quality.py``); one row per variant and decode."""
    args.arch = TINY_BART if args.tiny else dict(BART_BASE, max_position_embeddings=1024)  # BartConfig's default
    report.data["rows"] = quality.run_variants(args)
    lines = [f"{report.data['date']} on {report.data['gpu']}, {report.data['versions']}; training budget "
             f"{args.budget_s} s per variant, {'concurrently on one GPU' if args.concurrent else 'one after another'}",
             "", *quality.table(report.data["rows"])]
    report.path.with_suffix(".json").write_text(json.dumps(report.data, indent=2))
    report.path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", choices=["kobart", "causal-train", "causal-generate", "quality"], required=True)
    parser.add_argument("--data", required=True, help="CSV with dialogues and summaries (the 499 dev rows); "
                        "quality: the training file (DialogSum train.jsonl)")
    parser.add_argument("--tokenizer", required=True, help="a ~30k-token tokenizer trained offline on Korean dialogues; "
                        "quality: a 16k one trained on the training file")
    parser.add_argument("--out", required=True)
    parser.add_argument("--scratch", default="/tmp/speed_vs_hf", help="predictions, speed files, HF output_dir")
    parser.add_argument("--model_dir", default="/tmp/speed_vs_hf/random-qwen3-4b")
    parser.add_argument("--batch_size", type=int, default=32, help="KoBART training batch")
    parser.add_argument("--eval_batch_size", type=int, default=32, help="generation batch, both sides")
    parser.add_argument("--big_eval_batch_size", type=int, default=128, help="a larger generation batch, both sides")
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps per training run")
    parser.add_argument("--warmup", type=int, default=5, help="optimizer steps before timing")
    parser.add_argument("--rounds", type=int, default=2, help="KoBART: timed rounds per side after a warm-up round")
    parser.add_argument("--new_tokens", type=int, default=100)
    parser.add_argument("--gen_rows", type=int, default=499, help="causal generation: first N rows of --data")
    parser.add_argument("--variants", nargs="+", default=list(CAUSAL_CONFIGS), choices=list(CAUSAL_CONFIGS))
    parser.add_argument("--gen_plan", nargs="+", help="causal-generate rows, config:beams:batch:static|dynamic"
                        "[:options], options merge (adapters merged) and/or dequant (QLoRA base dequantized) joined by +",
                        default=["lora-bf16:1:32:static", "lora-bf16:1:32:dynamic", "lora-bf16:4:32:static",
                                 "lora-bf16:1:128:static", "qlora:1:32:static", "lora-bf16:4:32:dynamic"])
    parser.add_argument("--time_budget", type=float, default=420, help="causal-generate: seconds before skipping rows")
    parser.add_argument("--test", help="quality: the file predicted and scored (DialogSum test.jsonl, 3 references)")
    parser.add_argument("--budget_s", type=float, default=360, help="quality: training seconds per variant")
    parser.add_argument("--quality_variants", nargs="+", default=["ours", "hf", "hf+pad64"],
                        help="quality: ours (+augment, +timefit, +compile, +tokens), hf, hf+pad64, hf+tags, hf+pad64+tags")
    parser.add_argument("--concurrent", action="store_true", help="quality: run the variants at the same time")
    parser.add_argument("--decodes", nargs="+", default=list(quality.DECODES), choices=quality.DECODES,
                        help="quality: free (the recipe) and/or forced (min_new_tokens = new_tokens)")
    parser.add_argument("--kobart_parts", nargs="+", default=["train", "generate"], choices=["train", "generate"],
                        help="kobart: the workloads to run (1 = train, 2 = generate)")
    parser.add_argument("--seq2seq_options", nargs="*", default=[], choices=["compile", "token-budget", "all"],
                        help="kobart: rows of ours with these option sets (HF as in the first row)")
    parser.add_argument("--seq2seq_token_budget", type=int, default=65536, help="data.max_tokens_per_batch for KoBART")
    parser.add_argument("--causal_options", nargs="*", default=[],
                        choices=["packing", "chunked-loss", "compile", "all", "all+token-budget", "token-budget"],
                        help="causal-train: rows of ours with these option sets (HF shipped as in the first row)")
    parser.add_argument("--causal_token_budget", type=int, default=32768,
                        help="data.max_tokens_per_batch for the token-budget rows (accumulation 1, checkpointing on)")
    parser.add_argument("--loss_chunk_size", type=int, default=1024, help="model.loss_chunk_size in the option rows")
    parser.add_argument("--hf_flatten", action="store_true", help="causal-train: a row of HF with DataCollatorWithFlattening")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a CPU smoke test of the script")
    args = parser.parse_args()
    if args.seq2seq_options and "train" not in args.kobart_parts:
        parser.error("--seq2seq_options are training rows: add train to --kobart_parts")
    for row in args.gen_plan:
        try:
            parse_gen_row(row)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
    if args.group == "quality":
        for variant in args.quality_variants:
            try:
                quality.parse_variant(variant)
            except argparse.ArgumentTypeError as error:
                parser.error(f"--quality_variants: {error}")
        if not args.test:
            parser.error("--group quality needs --test")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    if args.group != "quality":  # a CSV subset for generation rows
        args.gen_data = str(subset(args.data, args.gen_rows, Path(args.scratch) / "gen.csv"))
    report = Report(args)
    {"kobart": kobart, "causal-train": causal_train, "causal-generate": causal_generate,
     "quality": quality_group}[args.group](args, report)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
