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

Code: this file (command line), ``kobart_group.py``, ``causal_groups.py``, ``quality.py`` (the groups),
``report.py`` (rows, tables, rates), ``ours_side.py`` / ``hf_side.py`` (the two sides).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import quality
from causal_fit import subset
from causal_groups import CAUSAL_CONFIGS, causal_generate, causal_train, parse_gen_row
from kobart_group import BART_BASE, TINY_BART, kobart
from report import Report


def quality_group(args, report: Report) -> None:
    """Workload 5: time to quality on DialogSum (``bench/quality.py``); one row per variant and decode."""
    args.arch = TINY_BART if args.tiny else dict(BART_BASE, max_position_embeddings=1024)  # BartConfig's default
    report.data["rows"] = quality.run_variants(args)
    lines = [f"{report.heading()}; training budget "
             f"{args.budget_s} s per variant, {'concurrently on one GPU' if args.concurrent else 'one after another'}",
             "", *quality.table(report.data["rows"])]
    report.save(lines)
    print("\n".join(lines), flush=True)


GROUPS = {"kobart": kobart, "causal-train": causal_train, "causal-generate": causal_generate, "quality": quality_group}


def build_parser() -> argparse.ArgumentParser:
    """The command line; its description is this file's docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", choices=list(GROUPS), required=True)
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
                        "[:options], options joined by +: merge / dequant (adapters merged, QLoRA base dequantized: "
                        "the shipped configs' default), unmerged / 4bit (without them)",
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
    parser.add_argument("--seq2seq_options", nargs="*", default=[],
                        choices=["compile", "token-budget", "all", "step", "step+graphs", "blocks+graphs",
                                 "step+graphs+token-budget", "blocks+graphs+fill", "unpinned"],
                        help="kobart: rows of ours with these option sets (HF as in the first row)")
    parser.add_argument("--seq2seq_token_budget", type=int, default=65536, help="data.max_tokens_per_batch for KoBART")
    parser.add_argument("--causal_options", nargs="*", default=[],
                        choices=["packing", "chunked-loss", "compile", "all", "all+token-budget", "token-budget",
                                 "all+token-budget-nockpt", "cudagraphs", "micro-batch"],
                        help="causal-train: rows of ours with these option sets (HF shipped as in the first row); "
                             "micro-batch = the shipped effective batch in one micro-batch (8 x 2 -> 16 x 1)")
    parser.add_argument("--causal_token_budget", type=int, default=32768,
                        help="data.max_tokens_per_batch for the token-budget rows (accumulation 1; checkpointing on, "
                             "except in all+token-budget-nockpt)")
    parser.add_argument("--loss_chunk_size", type=int, default=1024, help="model.loss_chunk_size in the option rows")
    parser.add_argument("--hf_flatten", action="store_true", help="causal-train: a row of HF with DataCollatorWithFlattening")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a CPU smoke test of the script")
    return parser


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The command line, with the checks argparse cannot make (each a one-line error, exit 2)."""
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
    return args


def main() -> None:
    args = parse_args(build_parser())
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    if args.group != "quality":  # a CSV subset for generation rows
        args.gen_data = str(subset(args.data, args.gen_rows, Path(args.scratch) / "gen.csv"))
    GROUPS[args.group](args, Report(args))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
