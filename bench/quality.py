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
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import REPO, sync
from hf_side import data_tags, dataset_order, in_dataset_order, length_grouping
from lightning_summ.io import read_examples

CONFIG = REPO / "bench/configs/dialogsum-bart-base.yaml"
RECIPE = {"lr": 3e-4, "batch_size": 32, "warmup_steps": 400, "label_smoothing": 0.1, "source": 512, "target": 128,
          "num_beams": 4, "new_tokens": 100, "max_epochs": 40, "weight_decay": 0.01}
HF_OPTIONS = {"pad64", "tags"}
# ours+augment: train-time augmentation (data.augment) for DialogSum's English: the speaker swap and the
# sentence split apply to any language; filler removal and synonyms are Korean-only, so not used.
AUGMENT = '{"augmenters": ["speaker_swap", "sentence_split"], "ratio": 0.5, "mode": "replace"}'
# The speed issue's options: timefit = warmup and decay fitted to trainer.max_time instead of to
# max_epochs (the recipe's 40 epochs would end a 6-minute run near the peak lr); compile = compiled
# transformer blocks; tokens = batches of at most 12,288 padded tokens (meant as the recipe's 32 rows
# with less padding, but on DialogSum with pad_to_multiple_of 64 they held about 49 rows on average:
# 2026-12-02, 4,514 steps at 620 samples/s in 360 s); each joins ours by '+' (ours+timefit+compile).
OURS_OPTIONS = {"augment": [f"--data.augment={AUGMENT}"], "timefit": ["--model.init_args.optimizer.schedule_to=max_time"],
                "compile": ["--model.init_args.compile=true"], "tokens": ["--data.max_tokens_per_batch=12288"]}
DECODES = ("free", "forced")


def rouge(predictions: list[str], references: list[list[str]]) -> dict:
    """ROUGE-1/2/L F1 x 100 by rouge-score with stemming: mean over each dialogue's references, then over dialogues."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"r1": 0.0, "r2": 0.0, "rl": 0.0}
    for pred, refs in zip(predictions, references, strict=True):
        scores = [scorer.score(ref, pred) for ref in refs]
        for key, name in (("r1", "rouge1"), ("r2", "rouge2"), ("rl", "rougeL")):
            totals[key] += sum(s[name].fmeasure for s in scores) / len(scores)
    return {k: round(100 * v / len(predictions), 2) for k, v in totals.items()}


def summary_stats(predictions: list[str], references: list[list[str]]) -> dict:
    words = sum(len(p.split()) for p in predictions) / len(predictions)
    return {**rouge(predictions, references), "mean_words": round(words, 1), "distinct": len(set(predictions)),
            "rows": len(predictions), "examples": predictions[:3]}


def budget_string(seconds: float) -> str:
    """Lightning's ``max_time`` format, DD:HH:MM:SS."""
    s = max(1, int(round(seconds)))
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


# -- ours: the real CLI ------------------------------------------------------------------------------
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


def ours(args, work: Path, options: set[str] = frozenset()) -> dict:
    common = ["--config", str(CONFIG), f"--model.init_args.tokenizer={args.tokenizer}",
              f"--model.init_args.model_config={json.dumps(args.arch)}", f"--data.train_path={args.train}",
              f"--data.val_path={args.test}",  # fit asks for one; limit_val_batches: 0 never runs it
              f"--data.eval_batch_size={args.eval_batch_size}", "--trainer.enable_progress_bar=false",
              "--trainer.callbacks=[]", "--trainer.callbacks+=lightning_summ.callbacks.SpeedMonitor"]
    ckpt_dir, log = work / "ckpt", work / "log.txt"
    fit = ["fit", *common, f"--trainer.callbacks.warmup_steps={args.warmup}",
           f"--trainer.callbacks.output_path={work / 'fit.json'}",
           f"--trainer.max_time={budget_string(args.budget_s)}",
           "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint", f"--trainer.callbacks.dirpath={ckpt_dir}",
           "--trainer.callbacks.save_last=true", "--trainer.callbacks.save_top_k=0",
           "--trainer.callbacks.save_weights_only=true", *(flag for name in sorted(options) for flag in OURS_OPTIONS[name])]
    wall = _cli(fit, log)
    speed = json.loads((work / "fit.json").read_text())["train"]
    result = {"steps": speed["steps"] + args.warmup, "train_samples_per_s": speed["samples_per_s"],
              "fit_wall_s": round(wall, 1), "decodes": {}}
    refs = [ex.summaries for ex in read_examples(args.test)]
    for mode in args.decodes:
        out = work / f"predict-{mode}.csv"
        forced = args.new_tokens if mode == "forced" else 0
        _cli(["predict", *common, "--trainer.callbacks.warmup_steps=0", f"--trainer.callbacks.output_path={out}.json",
              f"--ckpt_path={ckpt_dir / 'last.ckpt'}", f"--data.predict_path={args.test}",
              f"--model.init_args.generation.max_new_tokens={args.new_tokens}",
              f"--model.init_args.generation.min_new_tokens={forced}", f"--submission.output_path={out}",
              "--submission.candidates_path="], log)
        with out.open(newline="", encoding="utf-8") as f:
            texts = [row["summary"] for row in csv.DictReader(f)]
        gen = json.loads(Path(f"{out}.json").read_text())["predict"]
        seconds = len(texts) / gen["samples_per_s"] if gen["samples_per_s"] else None
        result["decodes"][mode] = _scored(texts, refs, seconds)
    return result


# -- Hugging Face: Seq2SeqTrainer -------------------------------------------------------------------
def _hf_features(tok, path: str) -> list[dict]:
    """``tokenizer(dialogue, text_target=summary)`` with the recipe's truncation (the EOS is kept)."""
    data = []
    for ex in read_examples(path):
        source = tok(ex.dialogue, max_length=RECIPE["source"], truncation=True)
        target = tok(text_target=ex.summaries[0] if ex.summaries else "", max_length=RECIPE["target"], truncation=True)
        data.append({"input_ids": source["input_ids"], "attention_mask": source["attention_mask"],
                     "labels": target["input_ids"]})
    return data


def _time_budget(seconds: float, warmup: int):
    """Stops ``Trainer.train`` at the first step end past ``seconds`` of training; times the steps after ``warmup``."""
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        start = mark = None
        timed_steps, timed_s = 0, 0.0

        def on_train_begin(self, a, state, control, **kw):
            sync()
            self.start = time.perf_counter()
            self.mark = self.start if warmup == 0 else None

        def on_step_end(self, a, state, control, **kw):
            sync()
            now = time.perf_counter()
            if state.global_step == warmup:
                self.mark = now
            elif self.mark is not None:
                self.timed_steps, self.timed_s = state.global_step - warmup, now - self.mark
            if now - self.start >= seconds:
                control.should_training_stop = True

    return TimeBudget()


def _sequential(train_args):
    """The same arguments with a sequential evaluation order: in transformers 5 a Trainer whose
    ``train_sampling_strategy`` is ``group_by_length`` also length-groups (and shuffles) ``predict``."""
    import dataclasses

    if getattr(train_args, "train_sampling_strategy", None) == "group_by_length":
        return dataclasses.replace(train_args, train_sampling_strategy="random")
    return train_args


def _hf_predict(trainer, test: list[dict], forced: dict, new_tokens: int) -> tuple[list[str], float, list[int]]:
    """``Seq2SeqTrainer.predict`` with generation; returns the texts in the order predict returns them,
    the seconds, and which dataset row each returned row is (its labels, which predict returns in the
    same order, are matched back to the dataset's)."""
    sync()
    t0 = time.perf_counter()
    out = trainer.predict(test, num_beams=RECIPE["num_beams"], max_new_tokens=new_tokens, **forced)
    sync()
    seconds = time.perf_counter() - t0
    tok = trainer.processing_class
    ids = out.predictions
    ids[ids < 0] = tok.pad_token_id  # predict pads across batches with -100
    texts = [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
    order = dataset_order(out.label_ids, test)
    return texts, seconds, order


def _scored(texts: list[str], refs: list[list[str]], seconds) -> dict:
    return {"gen_samples_per_s": round(len(texts) / seconds, 3) if seconds else None, **summary_stats(texts, refs),
            "predictions": texts}


def hf(args, work: Path, options: set[str]) -> dict:
    from transformers import (AutoTokenizer, BartConfig, BartForConditionalGeneration, DataCollatorForSeq2Seq,
                              Seq2SeqTrainer, Seq2SeqTrainingArguments)

    from lightning_summ.tags import add_tags_to_tokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    if "tags" in options:
        add_tags_to_tokenizer(tok, data_tags(args.train))
    arch = {k: v for k, v in args.arch.items() if k != "model_type"}
    config = BartConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id,
                        forced_eos_token_id=tok.eos_token_id, **arch)
    torch.manual_seed(42)
    model = BartForConditionalGeneration(config)
    train, test = _hf_features(tok, args.train), _hf_features(tok, args.test)
    collator = DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100,
                                      pad_to_multiple_of=64 if "pad64" in options else None)
    cuda = torch.cuda.is_available()
    train_args = Seq2SeqTrainingArguments(
        output_dir=str(work / "hf"), per_device_train_batch_size=RECIPE["batch_size"],
        per_device_eval_batch_size=args.eval_batch_size, learning_rate=RECIPE["lr"],
        warmup_steps=RECIPE["warmup_steps"], lr_scheduler_type="linear", num_train_epochs=RECIPE["max_epochs"],
        weight_decay=RECIPE["weight_decay"], label_smoothing_factor=RECIPE["label_smoothing"], bf16=cuda,
        **length_grouping(), predict_with_generate=True, save_strategy="no", report_to=[], logging_steps=200,
        disable_tqdm=True, dataloader_num_workers=0, use_cpu=not cuda)
    budget = _time_budget(args.budget_s, args.warmup)
    trainer = Seq2SeqTrainer(model=model, args=train_args, train_dataset=train, data_collator=collator,
                             processing_class=tok, callbacks=[budget])
    start = time.perf_counter()
    state = trainer.train()
    result = {"steps": state.global_step, "train_samples_per_s": round(
        budget.timed_steps * RECIPE["batch_size"] / budget.timed_s, 3) if budget.timed_s else 0.0,
        "fit_wall_s": round(time.perf_counter() - start, 1), "final_train_loss": round(state.training_loss, 4),
        "generation_config": model.generation_config.to_diff_dict(), "decodes": {}}
    result["decodes"], result["returned_rows_in_dataset_order"] = _hf_decodes(args, trainer, test)
    return result


def _hf_decodes(args, trainer, test: list[dict]) -> tuple[dict, int]:
    """Each decode scored as ``predict`` returns the rows and back in dataset order; for ``free`` also a
    second ``predict`` with sequential order (the fix a user can make). Returns the scores and how many
    returned rows were in their dataset position."""
    from transformers import Seq2SeqTrainer

    refs = [ex.summaries for ex in read_examples(args.test)]
    decodes, in_place = {}, None
    for mode in args.decodes:
        forced = {"min_new_tokens": args.new_tokens} if mode == "forced" else {}
        texts, seconds, order = _hf_predict(trainer, test, forced, args.new_tokens)
        decodes[mode] = _scored(texts, refs, seconds)  # as returned: what a user writes to a submission
        decodes[f"{mode}-reordered"] = _scored(in_dataset_order(texts, order), refs, None)
        in_place = sum(i == j for i, j in enumerate(order))
        if mode == "free":
            fixed = Seq2SeqTrainer(model=trainer.model, args=_sequential(trainer.args),
                                   data_collator=trainer.data_collator, processing_class=trainer.processing_class)
            texts, seconds, order = _hf_predict(fixed, test, forced, args.new_tokens)
            if order != list(range(len(texts))):
                raise RuntimeError("a predict with train_sampling_strategy='random' returned rows out of order")
            decodes["free-sequential"] = _scored(texts, refs, seconds)
    return decodes, in_place


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
    side, options = parse_variant(args.variant)
    for name in ("train", "test", "tokenizer", "result"):  # the CLI runs in another directory
        if Path(getattr(args, name)).exists() or name == "result":
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    work = Path(args.result).with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result = ours(args, work, options) if side == "ours" else hf(args, work, options)
    tmp = Path(f"{args.result}.tmp")
    tmp.write_text(json.dumps({"variant": args.variant, "started": started, "budget_s": args.budget_s, **result},
                              indent=2))
    tmp.replace(args.result)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
