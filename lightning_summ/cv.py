"""``lightning_summ cv``: k-fold cross-validation of any config, one command.

    lightning_summ cv --config configs/kobart.yaml --cv.num_folds 5 [--cv.predict true] [other flags]

Each fold gets a fresh model and Trainer (``fit`` with ``--data.fold k --data.num_folds n``), its
own TensorBoard run and checkpoints under ``<save_dir>/<name>/cv/fold_k``, then predicts its
held-out rows with its best checkpoint (out-of-fold predictions) and scores them with the project's
ROUGE. ``cv_summary.json`` holds per-fold and mean ± std scores; ``oof.csv`` holds every training
row's out-of-fold summary in the training file's order. A fold is done once its ``result.json``
exists: rerunning an interrupted cv skips finished folds and redoes the unfinished one from the
start. With ``--cv.predict true`` every fold model also predicts ``data.predict_path`` (submission
+ candidates JSONL per fold: the input of ``ensemble``).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import Optional

from lightning_summ.io_utils import atomic_write, write_submission

METRICS = ("r1", "r2", "rl", "rouge_mean", "rouge_sum")


def _write_examples(examples, path: Path) -> None:
    """Rows in the competition format (several references become summary1..N)."""
    n_refs = max(len(ex.summaries) for ex in examples)
    fields = ["fname", "dialogue"] + (["summary"] if n_refs == 1 else [f"summary{i + 1}" for i in range(n_refs)])
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for ex in examples:
            writer.writerow([ex.fname, ex.dialogue, *ex.summaries, *[""] * (n_refs - len(ex.summaries))])


def run_fold(fold: int, num_folds: int, args: list[str], fold_dir: Path, logger_name: str, predict: bool) -> dict:
    from lightning_summ.cli import run_cli
    from lightning_summ.metrics.rouge import rouge_from_files

    split = [f"--data.fold={fold}", f"--data.num_folds={num_folds}", f"--trainer.logger.init_args.name={logger_name}"]
    cli = run_cli(["fit", *args, *split, f"--trainer.logger.init_args.version=fold_{fold}"])
    ckpt = cli.trainer.checkpoint_callback.best_model_path if cli.trainer.checkpoint_callback else ""
    if not ckpt:
        ckpt = str(fold_dir / "checkpoints" / "final.ckpt")
        cli.trainer.save_checkpoint(ckpt)
    evaluation = cli.model.evaluation
    heldout = fold_dir / "heldout.csv"
    _write_examples(cli.datamodule.examples["val"], heldout)
    oof = fold_dir / "oof.csv"
    run_cli(["predict", *args, *split, f"--trainer.logger.init_args.version=fold_{fold}/predict_oof",
             f"--data.predict_path={heldout}", f"--ckpt_path={ckpt}", f"--submission.output_path={oof}"])
    scores = rouge_from_files(oof, heldout, tokenizer=evaluation.rouge_tokenizer, multi_ref=evaluation.multi_ref)
    result = {"fold": fold, "checkpoint": ckpt, "oof": str(oof), **scores}
    if predict:
        test_out = fold_dir / "test_submission.csv"
        run_cli(["predict", *args, *split, f"--trainer.logger.init_args.version=fold_{fold}/predict_test",
                 f"--ckpt_path={ckpt}", f"--submission.output_path={test_out}"])
        result["test_submission"] = str(test_out)
        result["test_candidates"] = str(test_out.with_name("candidates.jsonl"))
    with atomic_write(fold_dir / "result.json") as f:  # written last: marks the fold as done
        json.dump(result, f, indent=2)
    return result


def summarize(results: list[dict]) -> dict:
    summary = {"num_folds": len(results), "folds": results}
    for key in METRICS:
        values = [r[key] for r in results]
        summary[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return summary


def merge_oof(results: list[dict], train_path: str, out: Path) -> int:
    from lightning_summ.data.readers import read_examples

    order = [ex.fname for ex in read_examples(train_path)]
    rows = {}
    for r in results:
        with open(r["oof"], newline="", encoding="utf-8") as f:
            rows.update((row["fname"], row["summary"]) for row in csv.DictReader(f))
    write_submission(out, ((fname, rows[fname]) for fname in order if fname in rows))
    return len(rows)


def main(argv: list[str]) -> Optional[dict]:
    parser = argparse.ArgumentParser(prog="lightning_summ cv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cv.num_folds", dest="num_folds", type=int, default=5, help="number of folds (>= 2)")
    parser.add_argument("--cv.predict", dest="predict", type=lambda s: s.lower() in ("1", "true", "yes"),
                        default=False, help="also predict data.predict_path with every fold's model")
    cv_args, rest = parser.parse_known_args(argv)
    if cv_args.num_folds < 2:
        parser.error("--cv.num_folds must be at least 2")
    from lightning_summ.cli import run_cli

    probe = run_cli(rest, run=False)  # resolves the config once: where the runs go, which file is split
    logger, data = probe.trainer.logger, probe.datamodule
    if logger is None or not hasattr(logger, "save_dir"):
        parser.error("cv needs a logger with a save_dir (the default TensorBoardLogger)")
    if not data.train_path:
        parser.error("cv splits data.train_path, which is not set")
    logger_name = f"{logger.name}/cv"
    cv_dir = Path(logger.save_dir) / logger_name
    results = []
    for fold in range(cv_args.num_folds):
        fold_dir = cv_dir / f"fold_{fold}"
        done = fold_dir / "result.json"
        if done.is_file():
            print(f"cv: fold {fold} is done ({done}); skipping", flush=True)
            results.append(json.loads(done.read_text()))
            continue
        results.append(run_fold(fold, cv_args.num_folds, rest, fold_dir, logger_name, cv_args.predict))
    summary = summarize(results)
    summary["oof_rows"] = merge_oof(results, data.train_path, cv_dir / "oof.csv")
    with atomic_write(cv_dir / "cv_summary.json") as f:
        json.dump(summary, f, indent=2)
    print(f"{'fold':<6}" + "".join(f"{k:>12}" for k in METRICS))
    for r in results:
        print(f"{r['fold']:<6}" + "".join(f"{r[k]:>12.4f}" for k in METRICS))
    print(f"{'mean':<6}" + "".join(f"{summary[k]['mean']:>12.4f}" for k in METRICS))
    print(f"{'std':<6}" + "".join(f"{summary[k]['std']:>12.4f}" for k in METRICS))
    print(f"Wrote {cv_dir / 'cv_summary.json'} and {summary['oof_rows']} out-of-fold summaries to {cv_dir / 'oof.csv'}",
          flush=True)
    return summary
