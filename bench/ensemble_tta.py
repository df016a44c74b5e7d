"""ROUGE of a single model, k-fold soft voting, MBR / weighted voting over folds, and TTA on/off.

Runs on the CPU with the quickstart's tiny BART: ``cv`` trains k fold models on the shipped
Korean sample set, every fold model predicts the real Korean competition dev set (499 dialogues,
one reference each), and the combinations are scored with the project's morpheme ROUGE.

    python bench/ensemble_tta.py --dev ../shared/data/ko_dialogsum_competition_2025/dev.csv --out bench/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "lightning_summ", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"lightning_summ {args[0]} failed: {proc.stderr[-3000:]}")
    return proc.stdout


def score(predictions: Path, dev: str) -> dict:
    return json.loads(cli("score", "--predictions", str(predictions), "--references", dev).strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", required=True, help="file with references to predict and score")
    parser.add_argument("--out", required=True)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--scratch", default="/tmp/ensemble-bench")
    args = parser.parse_args()
    scratch, out = Path(args.scratch), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--config", "configs/quickstart.yaml", f"--trainer.logger.init_args.save_dir={scratch}/logs",
              f"--data.predict_path={args.dev}", "--model.init_args.generation.num_beams=4",
              "--trainer.enable_progress_bar=false"]
    start = time.perf_counter()
    cli("cv", f"--cv.num_folds={args.folds}", "--cv.predict=true", *common,
        "--model.init_args.generation.num_return_sequences=4")
    cv_dir = scratch / "logs" / "quickstart" / "cv"
    folds = [json.loads((cv_dir / f"fold_{k}" / "result.json").read_text()) for k in range(args.folds)]
    results = {f"single (fold {k})": score(Path(f["test_submission"]), args.dev) for k, f in enumerate(folds)}

    cands = [f["test_candidates"] for f in folds]
    cli("ensemble", "--inputs", *cands, "--method", "mbr", "--output", str(scratch / "mbr.csv"))
    results["MBR over folds"] = score(scratch / "mbr.csv", args.dev)
    cli("ensemble", "--inputs", *cands, "--method", "weighted", "--output", str(scratch / "weighted.csv"),
        "--weights_from", *[str(cv_dir / f"fold_{k}" / "result.json") for k in range(args.folds)])
    results["weighted voting over folds"] = score(scratch / "weighted.csv", args.dev)

    members = "[" + ", ".join(f["checkpoint"] for f in folds[1:]) + "]"
    cli("predict", *common, "--ckpt_path", folds[0]["checkpoint"], f"--model.init_args.ensemble_checkpoints={members}",
        f"--submission.output_path={scratch / 'soft.csv'}")
    results["soft voting (all folds, one beam search)"] = score(scratch / "soft.csv", args.dev)

    cli("predict", *common, "--ckpt_path", folds[0]["checkpoint"],
        "--trainer.callbacks+=lightning_summ.callbacks.TestTimeAugmentation", "--trainer.callbacks.num_aug=3",
        '--trainer.callbacks.augmenters=["speaker_swap", "filler_removal", "sentence_split"]',
        f"--submission.output_path={scratch / 'tta.csv'}")
    results["fold 0 + TTA (3 views, MBR)"] = score(scratch / "tta.csv", args.dev)

    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "dev": Path(args.dev).name, "folds": args.folds, "seconds": round(time.perf_counter() - start, 1),
              "cv_oof_rouge_mean": [f["rouge_mean"] for f in folds], "results": results}
    (out / "ensemble_tta.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    lines = ["| decoding | R1 | R2 | RL | rouge_mean |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['r1']:.4f} | {v['r2']:.4f} | {v['rl']:.4f} | {v['rouge_mean']:.2f} |" for k, v in results.items()]
    table = "\n".join(lines)
    (out / "ensemble_tta.md").write_text(f"{report['date']}, CPU, quickstart model, {args.folds} folds, "
                                         f"scored on {report['dev']} (morpheme ROUGE)\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
