"""The ``ours`` variants of the time-to-quality workload (``quality.py``): the real CLI,
``lightning_summ fit`` stopped by ``trainer.max_time``, then one ``lightning_summ predict`` per decode,
with ``bench/configs/dialogsum-bart-base.yaml`` and the options joined to ``ours`` by '+'.

Each command runs as a subprocess inside the variant's folder, where LightningCLI saves its
``config.yaml`` (no logger is set), so nothing lands in the checkout.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import REPO
from lightning_summ.io import read_examples
from quality_score import scored

CONFIG = REPO / "bench/configs/dialogsum-bart-base.yaml"
# ours+augment: train-time augmentation (data.augment) for DialogSum's English: the speaker swap and the
# sentence split apply to any language; filler removal and synonyms are Korean-only, so not used.
AUGMENT = '{"augmenters": ["speaker_swap", "sentence_split"], "ratio": 0.5, "mode": "replace"}'
# The speed issue's options: timefit = warmup and decay fitted to trainer.max_time instead of to
# max_epochs (the recipe's 40 epochs would end a 6-minute run near the peak lr); compile = compiled
# transformer blocks; tokens = batches of at most 12,288 padded tokens (meant as the recipe's 32 rows
# with less padding, but on DialogSum with pad_to_multiple_of 64 they held about 49 rows on average:
# 2026-12-02, 4,514 steps at 620 samples/s in 360 s); graphs = compiled blocks replayed as CUDA graphs
# (compile_mode reduce-overhead: KoBART's steady step 29 vs 60 ms; the whole-step scope breaks per layer on
# transformers 5.17, so not that one); fill = data.last_batch fill (every batch 32 rows, one shape fewer
# to record); each joins ours by '+' (ours+timefit+compile).
OURS_OPTIONS = {"augment": [f"--data.augment={AUGMENT}"], "timefit": ["--model.init_args.optimizer.schedule_to=max_time"],
                "compile": ["--model.init_args.compile=true"], "tokens": ["--data.max_tokens_per_batch=12288"],
                "graphs": ["--model.init_args.compile=true", "--model.init_args.compile_mode=reduce-overhead"],
                "fill": ["--data.last_batch=fill"]}


def budget_string(seconds: float) -> str:
    """Lightning's ``max_time`` format, DD:HH:MM:SS."""
    s = max(1, int(round(seconds)))
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _cli(argv: list[str], log: Path) -> float:
    """One ``lightning_summ`` command, run inside the variant's folder: LightningCLI saves its
    ``config.yaml`` in the working directory when no logger is set."""
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))  # this checkout
    with log.open("a") as out:
        proc = subprocess.run([sys.executable, "-m", "lightning_summ", *argv], stdout=out, stderr=subprocess.STDOUT,
                              env=env, cwd=log.parent)
    if proc.returncode:
        raise RuntimeError(f"lightning_summ {argv[0]} exited {proc.returncode}; see {log}")
    return time.perf_counter() - start


def _common_args(args) -> list[str]:
    """The overrides ``fit`` and ``predict`` share: config, tokenizer, architecture, data, speed monitor."""
    return ["--config", str(CONFIG), f"--model.init_args.tokenizer={args.tokenizer}",
            f"--model.init_args.model_config={json.dumps(args.arch)}", f"--data.train_path={args.train}",
            f"--data.val_path={args.test}",  # fit asks for one; limit_val_batches: 0 never runs it
            f"--data.eval_batch_size={args.eval_batch_size}", "--trainer.enable_progress_bar=false",
            "--trainer.callbacks=[]", "--trainer.callbacks+=lightning_summ.callbacks.SpeedMonitor"]


def _fit(args, work: Path, options: set[str]) -> dict:
    """Training by time budget; the last weights are saved in ``work/ckpt``."""
    ckpt_dir = work / "ckpt"
    fit = ["fit", *_common_args(args), f"--trainer.callbacks.warmup_steps={args.warmup}",
           f"--trainer.callbacks.output_path={work / 'fit.json'}",
           f"--trainer.max_time={budget_string(args.budget_s)}",
           "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint", f"--trainer.callbacks.dirpath={ckpt_dir}",
           "--trainer.callbacks.save_last=true", "--trainer.callbacks.save_top_k=0",
           "--trainer.callbacks.save_weights_only=true", *(flag for name in sorted(options) for flag in OURS_OPTIONS[name])]
    wall = _cli(fit, work / "log.txt")
    speed = json.loads((work / "fit.json").read_text())["train"]
    return {"steps": speed["steps"] + args.warmup, "train_samples_per_s": speed["samples_per_s"],
            "fit_wall_s": round(wall, 1), "decodes": {}}


def _predict(args, work: Path, mode: str, refs: list[list[str]]) -> dict:
    """One decode of the test file from the last checkpoint, scored; ``forced`` also sets the minimum length."""
    out = work / f"predict-{mode}.csv"
    forced = args.new_tokens if mode == "forced" else 0
    _cli(["predict", *_common_args(args), "--trainer.callbacks.warmup_steps=0",
          f"--trainer.callbacks.output_path={out}.json", f"--ckpt_path={work / 'ckpt' / 'last.ckpt'}",
          f"--data.predict_path={args.test}", f"--model.init_args.generation.max_new_tokens={args.new_tokens}",
          f"--model.init_args.generation.min_new_tokens={forced}", f"--submission.output_path={out}",
          "--submission.candidates_path="], work / "log.txt")
    with out.open(newline="", encoding="utf-8") as f:
        texts = [row["summary"] for row in csv.DictReader(f)]
    gen = json.loads(Path(f"{out}.json").read_text())["predict"]
    seconds = len(texts) / gen["samples_per_s"] if gen["samples_per_s"] else None
    return scored(texts, refs, seconds)


def run_variant(args, work: Path, options: set[str] = frozenset()) -> dict:
    """``ours`` with ``options``: fit, then every decode of ``args.decodes``; files in ``work``."""
    result = _fit(args, work, options)
    refs = [ex.summaries for ex in read_examples(args.test)]
    for mode in args.decodes:
        result["decodes"][mode] = _predict(args, work, mode, refs)
    return result
