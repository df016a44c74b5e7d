"""Shipped LLM configs on random weights of their real architectures through ``lightning_summ fit``.

Random weights with the real architecture (``lightning_summ/assets/architectures/qwen3-4b.json``)
have the speed and memory of the trained model; no hub access is needed. Each variant runs the
shipped config (``configs/qwen3-4b-qlora.yaml``, ``configs/qwen3-4b-lora-bf16.yaml``) through the
CLI with only data paths, run length and a forced generation length overridden, and the
``SpeedMonitor`` callback reports samples/s, real tokens/s and peak GPU memory.

    python bench/causal_fit.py --train dev.csv --tokenizer tok_dir --out results_dir

The tokenizer is trained offline beforehand (``python -m lightning_summ.data.tokenizer_training``);
a chat template like Qwen's is added here so the instruct prompt path is the one measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from lightning_summ.io import read_examples, write_examples

REPO = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
VARIANTS = {"qlora": "configs/qwen3-4b-qlora.yaml", "lora-bf16": "configs/qwen3-4b-lora-bf16.yaml",
            "solar-qlora": "configs/solar-10.7b-qlora.yaml", "polyglot-qlora": "configs/polyglot-ko-12.8b-qlora.yaml",
            "bllossom-qlora": "configs/llama-3.2-korean-bllossom-3b-qlora.yaml"}


def materialize(tokenizer_dir: str, out_dir: Path, architecture: str | dict) -> None:
    """Save a random-weight model of ``architecture`` (a file in ``assets/architectures`` or a config
    dict; bf16) with an instruct tokenizer, as a hub checkpoint would be."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.eos_token, tok.chat_template = "<|im_end|>", CHAT_TEMPLATE
    spec = dict(architecture) if isinstance(architecture, dict) else json.loads(
        (REPO / "lightning_summ/assets/architectures" / architecture).read_text())
    spec.update(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)  # the real vocabulary size
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def subset(path: str, n: int, out: Path) -> Path:
    write_examples(out, read_examples(path)[:n])
    return out


def run_variant(name: str, model_dir: Path, train: str, val: Path, args, out: Path, scratch: Path) -> dict:
    speed_json = out / f"speed-{name}.json"
    cmd = [sys.executable, "-m", "lightning_summ", "fit", "--config", str(REPO / VARIANTS[name]),
           f"--model.init_args.pretrained={model_dir}", f"--data.train_path={train}", f"--data.val_path={val}",
           f"--data.batch_size={args.batch_size}", f"--data.eval_batch_size={args.eval_batch_size}",
           "--model.init_args.evaluation.generate_limit=100000",
           "--model.init_args.evaluation.rouge_tokenizer=whitespace",  # kiwipiepy's model does not travel
           f"--model.init_args.generation.max_new_tokens={args.new_tokens}",
           f"--model.init_args.generation.min_new_tokens={args.new_tokens}",  # forced length: equal work
           "--trainer.max_epochs=1", f"--trainer.limit_train_batches={args.train_batches}",
           "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
           f"--trainer.logger.init_args.save_dir={scratch / 'logs'}", "--trainer.enable_checkpointing=false",
           "--trainer.callbacks=[]",
           "--trainer.callbacks+=lightning_summ.callbacks.SpeedMonitor",
           f"--trainer.callbacks.warmup_steps={args.warmup}", f"--trainer.callbacks.output_path={speed_json}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    (out / f"log-{name}.txt").write_text(proc.stdout[-20000:] + "\n" + proc.stderr[-20000:])
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    result = json.loads(speed_json.read_text())
    result["wall_s"] = round(time.perf_counter() - start, 1)
    result["config"] = VARIANTS[name]
    gen = result["validation"]
    gen["generated_tokens_per_s"] = round(gen["samples_per_s"] * args.new_tokens, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="CSV with dialogues and summaries")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--architecture", default="qwen3-4b.json", help="file in lightning_summ/assets/architectures")
    parser.add_argument("--variants", nargs="+", default=["qlora", "lora-bf16"], choices=list(VARIANTS))
    parser.add_argument("--batch_size", type=int, default=8, help="the shipped configs' batch size")
    parser.add_argument("--eval_batch_size", type=int, default=32)
    parser.add_argument("--train_batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--val_rows", type=int, default=64)
    parser.add_argument("--new_tokens", type=int, default=100)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path("/tmp") / f"random-{Path(args.architecture).stem}"
    t0 = time.perf_counter()
    materialize(args.tokenizer, model_dir, args.architecture)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "materialize_s": round(time.perf_counter() - t0, 1), "args": vars(args), "variants": {}}
    import lightning
    import peft
    import transformers
    report["versions"] = {"lightning": lightning.__version__, "transformers": transformers.__version__,
                          "peft": peft.__version__}
    scratch = Path("/tmp/causal-bench")  # logs and the validation subset stay out of the results
    scratch.mkdir(parents=True, exist_ok=True)
    val = subset(args.train, args.val_rows, scratch / "val.csv")
    for name in args.variants:
        report["variants"][name] = run_variant(name, model_dir, args.train, val, args, out, scratch)
    stem = "causal_fit" if args.architecture == "qwen3-4b.json" else f"causal_fit_{Path(args.architecture).stem}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    lines = ["| variant | train samples/s | train tokens/s | val gen samples/s (100 new tokens) | peak GPU GB |",
             "|---|---|---|---|---|"]
    for name, r in report["variants"].items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} | | | |")
            continue
        lines.append(f"| {name} | {r['train']['samples_per_s']} | {r['train']['tokens_per_s']} | "
                     f"{r['validation']['samples_per_s']} | {r['peak_mem_gb']} |")
    table = "\n".join(lines)
    (out / f"{stem}.md").write_text(f"{report['date']} on {report['gpu']}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
