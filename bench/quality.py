"""Workload 5 of ``speed_vs_hf.py``, time to quality: train by wall-clock budget, then predict and score.

Each variant runs as its own process (``python bench/quality.py --variant NAME ...``, started by
``speed_vs_hf.py --group quality``), so variants can share one GPU concurrently and none inherits
another's allocator or compiled state. A variant trains a random-init model for ``--budget_s`` seconds
of training, decodes every test dialogue in each of ``--decodes`` ways and scores the summaries with
rouge-score (Porter stemming; F1 averaged over a dialogue's references, then over dialogues).

Variants:
* ``ours``: the real CLI, ``lightning_summ fit`` (``trainer.max_time``) then ``predict``, with
  ``bench/configs/dialogsum-bart-base.yaml``.
* ``hf`` plus options joined by ``+``: ``Seq2SeqTrainer`` as its docs show it (``BartConfig`` with the
  tokenizer's ids, ``DataCollatorForSeq2Seq(tokenizer, model=model)``, ``label_smoothing_factor``,
  length grouping, bf16), stopped by a ``TrainerCallback`` at the budget; ``Seq2SeqTrainer.predict``
  with ``predict_with_generate``. Options: ``pad64`` (``pad_to_multiple_of=64``), ``tags`` (the
  ``#Tag#`` tokens added to the tokenizer, as ours does).

Decodes (beam 4, at most 100 new tokens): ``free`` (the recipe) and ``forced`` (also
``min_new_tokens=100``: the fixed length the speed rows use to time generation). HF's rows are
scored three ways: as ``predict`` returns them (what a user writes to a submission), ``-reordered``
(the same texts put back in dataset order, found through the labels ``predict`` returns beside them)
and ``free-sequential`` (a second ``predict`` with sequential order, the fix): in transformers 5,
``train_sampling_strategy="group_by_length"`` length-groups ``predict``'s rows as well (bench/NOTES.md).

This file is the variant's process (its command line) and the parent's side (``run_variants``,
``table``); the variants are in ``quality_ours.py`` and ``quality_hf.py``, the scores in ``quality_score.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import quality_hf
import quality_ours
from quality_hf import HF_OPTIONS, RECIPE
from quality_ours import OURS_OPTIONS

from lightning_summ.outputs import atomic_write

DECODES = ("free", "forced")


def table(rows: list[dict]) -> list[str]:
    """One Markdown line per (variant, decode)."""
    lines = ["| variant | decode | steps | train samples/s | gen samples/s | R1 | R2 | RL | mean words | distinct |",
             "|---" * 10 + "|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['error']} |" + " |" * 8)
            continue
        for mode, d in r["decodes"].items():
            cells = [r["variant"], mode, r["steps"], r["train_samples_per_s"], d["gen_samples_per_s"], d["r1"], d["r2"],
                     d["rl"], d["mean_words"], f"{d['distinct']}/{d['rows']}"]
            lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return lines


def run_variants(args) -> list[dict]:
    """Each of ``args.quality_variants`` in its own process, all at once with ``args.concurrent``."""
    scratch = Path(args.scratch) / "quality"
    scratch.mkdir(parents=True, exist_ok=True)
    running = []
    for variant in args.quality_variants:
        stem = variant.replace("+", "_")  # file names of letters, digits, '.', '_', '-' travel back from the GPU
        result, log = scratch / f"{stem}.json", scratch / f"{stem}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(worker_argv(args, variant, result), stdout=out, stderr=subprocess.STDOUT)
        running.append((variant, result, log, proc))
        if not args.concurrent:
            proc.wait()
    rows = []
    for variant, result, log, proc in running:
        if proc.wait() == 0:
            row = json.loads(result.read_text())
            for decode in row["decodes"].values():
                decode.pop("predictions", None)  # kept in the variant's own JSON
            rows.append(row)
            continue
        tail = log.read_text()[-3000:]
        print(f"--- {variant} failed (exit {proc.returncode}), end of {log}:\n{tail}", flush=True)
        rows.append({"variant": variant, "error": f"exit {proc.returncode}: " + tail.strip().splitlines()[-1][:200]})
    return rows


def parse_variant(name: str) -> tuple[str, set[str]]:
    """``ours+timefit`` -> ("ours", {"timefit"}); an unknown side or option is an ``ArgumentTypeError``."""
    side, *options = name.split("+")
    allowed = OURS_OPTIONS if side == "ours" else HF_OPTIONS
    if side not in ("ours", "hf") or not set(options) <= set(allowed):
        raise argparse.ArgumentTypeError(f"variant '{name}': use ours with options from {sorted(OURS_OPTIONS)} or hf "
                                         f"with options from {sorted(HF_OPTIONS)}, joined by '+' (ours+timefit, hf+pad64)")
    return side, set(options)


def worker_argv(args, variant: str, result: Path) -> list[str]:
    """The command line that runs one variant in its own process."""
    return [sys.executable, str(Path(__file__)), "--variant", variant, "--train", args.data, "--test", args.test,
            "--tokenizer", args.tokenizer, "--arch", json.dumps(args.arch), "--budget_s", str(args.budget_s),
            "--warmup", str(args.warmup), "--eval_batch_size", str(args.eval_batch_size),
            "--new_tokens", str(args.new_tokens), "--decodes", *args.decodes, "--result", str(result)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--arch", type=json.loads, required=True, help="BART config entries (JSON)")
    parser.add_argument("--budget_s", type=float, required=True, help="training seconds")
    parser.add_argument("--warmup", type=int, default=5, help="optimizer steps before timing")
    parser.add_argument("--eval_batch_size", type=int, default=32)
    parser.add_argument("--new_tokens", type=int, default=RECIPE["new_tokens"])
    parser.add_argument("--decodes", nargs="+", choices=DECODES, default=list(DECODES))
    parser.add_argument("--result", required=True, help="JSON file for this variant's result")
    args = parser.parse_args(argv)
    try:
        side, options = parse_variant(args.variant)
    except argparse.ArgumentTypeError as error:
        parser.error(f"--variant: {error}")
    for name in ("train", "test", "tokenizer", "result"):  # the CLI runs in another directory
        if Path(getattr(args, name)).exists() or name == "result":
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    work = Path(args.result).with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    run_variant = quality_ours.run_variant if side == "ours" else quality_hf.run_variant
    result = run_variant(args, work, options)
    with atomic_write(args.result) as f:
        json.dump({"variant": args.variant, "started": started, "budget_s": args.budget_s, **result}, f, indent=2)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
