"""Side by side in one process: lightning_summ vs Hugging Face's Seq2SeqTrainer, KoBART architecture.

Workload 1: fine-tuning (source 512 / target 100 tokens max); workload 2: generation of exactly
``--new_tokens`` tokens with beam 4 for every dialogue (forced length, so both sides do the same
work). Both sides get the same random-weight model (BART-base shape with the tokenizer's
vocabulary, ``#Tag#`` tokens added), the same data, batch sizes and bf16; Hugging Face gets its
documented best options (``group_by_length``, fused AdamW, ``predict_with_generate``). Rounds
alternate (ours, HF, ours, HF...) after a warm-up round; the table reports the mean of the timed
rounds, real (non-pad) tokens/s, peak GPU memory and ours/HF ratios.

    python bench/speed_vs_hf.py --data dev.csv --tokenizer tok_dir --out results/        # GPU
    python bench/speed_vs_hf.py --data dev.csv --tokenizer tok_dir --out /tmp/x --tiny    # CPU smoke test

Status: written and smoke-tested on the CPU; not yet run on the GPU (the speed issue is open).
The Qwen3-4B workloads (3, 4) are not in this script yet.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
BART_BASE = {"model_type": "bart", "d_model": 768, "encoder_layers": 6, "decoder_layers": 6,
             "encoder_attention_heads": 12, "decoder_attention_heads": 12, "encoder_ffn_dim": 3072,
             "decoder_ffn_dim": 3072, "max_position_embeddings": 1026}
TINY = {"model_type": "bart", "d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
        "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 1026}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb():
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def ours(args, model_config: dict, mode: str) -> dict:
    """One run of ``lightning_summ fit`` (training only) or ``predict`` with SpeedMonitor."""
    from lightning_summ.cli import run_cli

    out = Path(args.out) / f"ours-{mode}-{time.time_ns()}.json"
    common = ["--config", str(REPO / "configs/kobart.yaml"), "--model.init_args.pretrained=null",
              f"--model.init_args.tokenizer={args.tokenizer}", f"--model.init_args.model_config={json.dumps(model_config)}",
              f"--data.train_path={args.data}", f"--data.val_path={args.data}", f"--data.predict_path={args.data}",
              "--data.num_workers=0",
              f"--data.batch_size={args.batch_size}", f"--data.eval_batch_size={args.eval_batch_size}",
              f"--model.init_args.generation.max_new_tokens={args.new_tokens}",
              f"--model.init_args.generation.min_new_tokens={args.new_tokens}",
              "--model.init_args.generation.no_repeat_ngram_size=0", "--model.init_args.generation.num_beams=4",
              "--trainer.enable_progress_bar=false", "--trainer.logger=false", "--trainer.enable_checkpointing=false",
              "--trainer.callbacks=[]", "--trainer.callbacks+=lightning_summ.callbacks.SpeedMonitor",
              f"--trainer.callbacks.warmup_steps={args.warmup}", f"--trainer.callbacks.output_path={out}"]
    reset_peak()
    if mode == "train":
        run_cli(["fit", *common, f"--trainer.max_steps={args.steps + args.warmup}", "--trainer.limit_val_batches=0",
                 "--trainer.max_epochs=1000"])
        result = json.loads(out.read_text())["train"]
    else:
        run_cli(["predict", *common, f"--submission.output_path={out.with_suffix('.csv')}"])
        result = json.loads(out.read_text())["predict"]
    result["peak_mem_gb"] = peak_gb()
    return result


def hf(args, model_config: dict, mode: str) -> dict:
    """The same work through transformers' Seq2SeqTrainer."""
    from datasets import Dataset
    from transformers import (AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq,
                              Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback)

    from lightning_summ.data.readers import read_examples
    from lightning_summ.data.special_tokens import add_tags_to_tokenizer, find_tags, tag_vocabulary

    examples = read_examples(args.data)
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    add_tags_to_tokenizer(tok, tag_vocabulary(find_tags(t for ex in examples for t in (ex.dialogue, *ex.summaries))))
    spec = dict(model_config)
    config = AutoConfig.for_model(spec.pop("model_type"), vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                  decoder_start_token_id=tok.eos_token_id, **spec)
    model = AutoModelForSeq2SeqLM.from_config(config, attn_implementation="sdpa")
    data = Dataset.from_dict({"dialogue": [ex.dialogue for ex in examples], "summary": [ex.summaries[0] if ex.summaries else "" for ex in examples]})
    data = data.map(lambda b: tok(b["dialogue"], max_length=512, truncation=True, text_target=b["summary"]),
                    batched=True, remove_columns=["dialogue", "summary"])
    data = data.map(lambda b: {"labels": [ids[:100] for ids in b["labels"]]}, batched=True)
    tokens = {"n": 0}

    def collate(features, base=DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100)):
        batch = base(features)
        tokens["n"] += int(batch["attention_mask"].sum())
        if batch.get("labels") is not None:
            tokens["n"] += int((batch["labels"] != -100).sum())
        return batch

    cuda = torch.cuda.is_available()
    # Length grouping: `group_by_length=True` in older transformers, a sampling strategy in newer ones.
    grouping = ({"train_sampling_strategy": "group_by_length"}
                if "train_sampling_strategy" in inspect.signature(Seq2SeqTrainingArguments).parameters
                else {"group_by_length": True})
    train_args = Seq2SeqTrainingArguments(
        output_dir=str(Path(args.out) / "hf"), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size, max_steps=args.steps + args.warmup, bf16=cuda,
        **grouping, optim="adamw_torch_fused" if cuda else "adamw_torch", learning_rate=1e-5,
        lr_scheduler_type="cosine", warmup_steps=max(1, (args.steps + args.warmup) // 10), max_grad_norm=1.0, logging_steps=10**6, save_strategy="no",
        report_to=[], dataloader_num_workers=0, predict_with_generate=True, disable_tqdm=True)

    class Timer(TrainerCallback):
        def __init__(self):
            self.start, self.seconds, self.steps, self.tokens0 = 0.0, 0.0, 0, 0

        def on_step_begin(self, a, state, control, **kw):
            sync()
            self.start = time.perf_counter()
            if state.global_step == args.warmup:
                self.tokens0 = tokens["n"]

        def on_step_end(self, a, state, control, **kw):
            sync()
            if state.global_step > args.warmup:
                self.seconds += time.perf_counter() - self.start
                self.steps += 1

    timer = Timer()
    trainer = Seq2SeqTrainer(model=model, args=train_args, train_dataset=data, data_collator=collate,
                             processing_class=tok, callbacks=[timer])
    reset_peak()
    if mode == "train":
        trainer.train()
        samples = timer.steps * args.batch_size
        # tokens counted from the collated batches after warm-up (the last batch may be counted ahead)
        return {"steps": timer.steps, "samples": samples, "seconds": round(timer.seconds, 3),
                "samples_per_s": round(samples / timer.seconds, 3),
                "tokens_per_s": round((tokens["n"] - timer.tokens0) / timer.seconds, 1), "peak_mem_gb": peak_gb()}
    model.to(trainer.args.device)
    sync()
    start = time.perf_counter()
    # Seq2SeqTrainer.predict needs labels here (without them it fails looking up the loss), so the
    # HF side also runs one teacher-forced forward pass per batch that ours does not: noted in results.
    trainer.predict(data, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, num_beams=4)
    sync()
    seconds = time.perf_counter() - start
    return {"samples": len(data), "seconds": round(seconds, 3), "samples_per_s": round(len(data) / seconds, 3),
            "tokens_per_s": None, "peak_mem_gb": peak_gb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--eval_batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60, help="timed training steps per round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--new_tokens", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per side, after one warm-up round")
    parser.add_argument("--tiny", action="store_true", help="a tiny model: a CPU smoke test of the script")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    config = TINY if args.tiny else BART_BASE
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "args": vars(args), "workloads": {}}
    for workload, mode in (("1_kobart_train", "train"), ("2_kobart_generate_beam4", "generate")):
        runs = {"ours": [], "hf": []}
        for round_ in range(args.rounds + 1):  # round 0 warms up both sides and is not reported
            for side, fn in (("ours", ours), ("hf", hf)):
                result = fn(args, config, mode)
                if round_ > 0:
                    runs[side].append(result)
        summary = {side: {"samples_per_s": statistics.fmean(r["samples_per_s"] for r in rs),
                          "tokens_per_s": statistics.fmean(r["tokens_per_s"] or 0 for r in rs),
                          "peak_mem_gb": max((r["peak_mem_gb"] or 0) for r in rs) or None, "runs": rs}
                   for side, rs in runs.items()}
        if mode == "generate":  # both sides generate exactly new_tokens per row: count those
            for side in ("ours", "hf"):
                summary[side]["tokens_per_s"] = summary[side]["samples_per_s"] * args.new_tokens
        summary["ratio"] = round(summary["ours"]["samples_per_s"] / summary["hf"]["samples_per_s"], 3)
        report["workloads"][workload] = summary
    (Path(args.out) / "speed_vs_hf.json").write_text(json.dumps(report, indent=2))
    lines = ["| workload | ours samples/s | HF samples/s | ratio | ours tokens/s | HF tokens/s | ours peak GB | HF peak GB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, w in report["workloads"].items():
        lines.append(f"| {name} | {w['ours']['samples_per_s']:.2f} | {w['hf']['samples_per_s']:.2f} | {w['ratio']:.2f} | "
                     f"{w['ours']['tokens_per_s']:.0f} | {w['hf']['tokens_per_s']:.0f} | {w['ours']['peak_mem_gb']} | "
                     f"{w['hf']['peak_mem_gb']} |")
    table = "\n".join(lines)
    (Path(args.out) / "speed_vs_hf.md").write_text(f"{report['date']} on {report['gpu']}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
