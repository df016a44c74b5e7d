"""DDP check for LoRA/QLoRA: fit on N devices, then validate on 1 and on N devices, and predict on N.

Under DDP the DataModule shards length-sorted batches itself and pads the last round with repeated
batches; ROUGE must count each row once, so validation ROUGE on N devices has to equal ROUGE on one.

    python bench/ddp_check.py --accelerator gpu --devices 2 --out results/   # 2 GPUs
    python bench/ddp_check.py --accelerator cpu --devices 2 --out results/   # gloo on CPU

Uses a small random model of a shipped config's architecture (saved locally, loaded with
``from_pretrained``, 4-bit for the QLoRA config on GPUs) and the package's sample data.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from lightning_summ.io import read_submission

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def run(args: list[str], log: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "lightning_summ", *args], cwd=REPO, capture_output=True, text=True)
    log.write_text(proc.stdout[-30000:] + "\n" + proc.stderr[-30000:])
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(args[:3])}: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout


def rouge_from_log(stdout: str) -> float:
    match = re.search(r"val/rouge_mean\s*│\s*([0-9.]+)", stdout)
    if not match:
        raise SystemExit("no val/rouge_mean in the validate output")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--config", default="configs/qwen3-4b-qlora.yaml")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path("/tmp/ddp-check")
    from test_cli_causal import tiny_pretrained  # the tests' small-model builder

    model_dir = tiny_pretrained(scratch / "model", "qwen3-4b.json", chat=True)
    common = ["--config", args.config, f"--model.init_args.pretrained={model_dir}",
              "--model.init_args.max_length=320", "--model.init_args.generation.max_new_tokens=16",
              "--model.init_args.generation.min_new_tokens=16",  # non-empty output: ROUGE > 0 to compare
              "--model.init_args.evaluation.generate_limit=1000", "--model.init_args.evaluation.rouge_tokenizer=char",
              "--data.train_path=pkg://sample_data/train.csv", "--data.val_path=pkg://sample_data/dev.csv",
              "--data.predict_path=pkg://sample_data/test.csv", "--data.batch_size=4", "--data.eval_batch_size=6",
              "--data.num_workers=0", f"--trainer.accelerator={args.accelerator}",
              f"--trainer.logger.init_args.save_dir={scratch / 'logs'}", "--trainer.enable_progress_bar=false"]
    if args.accelerator == "cpu":
        common.append("--model.init_args.quantization=null")  # bitsandbytes' 4-bit training is for GPUs
    ddp = [f"--trainer.devices={args.devices}", "--trainer.strategy=ddp"]
    # A high learning rate so that the small model says something: ROUGE > 0 makes the comparison mean something.
    stdout = run(["fit", *common, *ddp, "--trainer.max_epochs=2", "--trainer.num_sanity_val_steps=0",
                  "--model.init_args.optimizer.lr=1e-2"],
                 out / "ddp-fit.log")
    ckpt = re.search(r"Best checkpoint: (\S+)", stdout).group(1)
    single = rouge_from_log(run(["validate", *common, "--trainer.devices=1", "--ckpt_path", ckpt],
                                out / "ddp-validate-1.log"))
    multi = rouge_from_log(run(["validate", *common, *ddp, "--ckpt_path", ckpt], out / "ddp-validate-n.log"))
    stdout = run(["predict", *common, *ddp, "--ckpt_path", ckpt,
                  f"--submission.output_path={scratch / 'submission.csv'}"], out / "ddp-predict.log")
    fnames = list(read_submission(scratch / "submission.csv"))
    report = {"accelerator": args.accelerator, "devices": args.devices, "config": args.config,
              "val_rouge_mean_1_device": single, f"val_rouge_mean_{args.devices}_devices": multi,
              "rouge_equal": abs(single - multi) < 1e-4, "predict_rows": len(fnames),
              "predict_in_input_order": fnames == [f"test_{i}" for i in range(40)]}
    (out / f"ddp_check_{args.accelerator}{args.devices}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if not (report["rouge_equal"] and report["predict_in_input_order"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
