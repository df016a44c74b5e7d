"""``lightning_summ cv``: k-fold cross-validation of any config, one command.

    lightning_summ cv --config configs/quickstart.yaml --cv.num_folds 5 [--cv.predict true] [fit's flags]

Each fold gets a fresh model and Trainer (``fit`` with ``--data.fold k --data.num_folds n``), its
own TensorBoard run and checkpoints under ``<save_dir>/<name>/cv/fold_k`` (the best one also as
``fold_k/best.ckpt``), then predicts its held-out rows with that checkpoint (out-of-fold
predictions) and scores them with the project's ROUGE. ``cv_summary.json`` holds per-fold and mean ± std scores; ``oof.csv`` holds every training
row's out-of-fold summary in the training file's order. A fold is done once its ``result.json``
exists: rerunning an interrupted cv skips finished folds and resumes the unfinished one from its
``last.ckpt`` (exactly, as ``fit --ckpt_path last``), or redoes it when it died before writing one. With ``--cv.predict true`` every fold model also predicts ``data.predict_path`` (submission
+ candidates JSONL per fold: the input of ``ensemble``). Every option other than ``--cv.*`` is
``fit``'s (see ``lightning_summ fit --help``).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path

from lightning_summ.commands._args import split_options, verb_parser
from lightning_summ.console import say
from lightning_summ.errors import ConfigError
from lightning_summ.io import read_examples, read_submission, write_examples, write_submission
from lightning_summ.outputs import atomic_write

METRICS = ("r1", "r2", "rl", "rouge_mean", "rouge_sum")


def cv_options(num_folds: int = 5, predict: bool = False) -> dict:
    """Options of ``cv`` (``--cv.*``).

    Args:
        num_folds: number of folds (>= 2).
        predict: also predict data.predict_path with every fold's model.
    """
    if num_folds < 2:
        raise ConfigError(f"--cv.num_folds must be at least 2, got {num_folds}")
    return {"num_folds": num_folds, "predict": predict}


def run_fold(fold: int, num_folds: int, args: list[str], fold_dir: Path, logger_name: str, predict: bool) -> dict:
    from lightning_summ.callbacks.checkpoint import best_checkpoint_callback
    from lightning_summ.commands.lightning import run_cli
    from lightning_summ.metrics.rouge import rouge_from_files

    split = [f"--data.fold={fold}", f"--data.num_folds={num_folds}", f"--trainer.logger.init_args.name={logger_name}"]
    cli = run_cli(["fit", *args, *split, f"--trainer.logger.init_args.version=fold_{fold}", *resume_fold(fold_dir)])
    ckpt = str(fold_dir / "best.ckpt")
    best_callback = best_checkpoint_callback(cli.trainer)
    best = best_callback.best_model_path if best_callback else ""
    if not best:  # no checkpoint callback (or it never saved): the final weights are the fold's model
        cli.trainer.save_checkpoint(ckpt)
    elif cli.trainer.is_global_zero:
        link_or_copy(best, ckpt)
    cli.trainer.strategy.barrier()  # under DDP the other ranks predict from best.ckpt next
    evaluation = cli.model.evaluation
    heldout = fold_dir / "heldout.csv"
    write_examples(heldout, cli.datamodule.examples["val"])
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


def resume_fold(fold_dir: Path) -> list[str]:
    """``fit``'s extra options for a fold that is not done: resume it from its ``last.ckpt`` if a
    killed run left one (the same weights, data order and best-model record as an uninterrupted
    fold), else start it afresh without the killed run's checkpoints, which would otherwise sit
    beside the new ones (and could be taken for the fold's best)."""
    if (fold_dir / "checkpoints" / "last.ckpt").is_file():
        say(f"cv: resuming the unfinished fold in {fold_dir}")
        return ["--ckpt_path=last"]
    if (fold_dir / "checkpoints").is_dir():
        say(f"cv: {fold_dir} holds an unfinished fold with nothing to resume from; redoing it")
        shutil.rmtree(fold_dir / "checkpoints")
    return []


def link_or_copy(source: str, target: str) -> None:
    """``target`` becomes ``source``'s content: a hard link (no copy of a large checkpoint) where the
    file system allows, else a copy; replaced atomically. ``fold_k/best.ckpt`` names the fold's best
    checkpoint whatever the checkpoint callback's filename pattern (soft voting and the README use it)."""
    tmp = Path(target).with_name(f".{Path(target).name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def summarize(results: list[dict]) -> dict:
    summary = {"num_folds": len(results), "folds": results}
    for key in METRICS:
        values = [r[key] for r in results]
        summary[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return summary


def merge_oof(results: list[dict], train_path: str, out: Path) -> int:
    """Every fold's out-of-fold summaries in one submission, in the training file's order."""
    rows: dict[str, str] = {}
    for r in results:
        rows.update(read_submission(r["oof"]))
    order = [ex.fname for ex in read_examples(train_path)]
    write_submission(out, ((fname, rows[fname]) for fname in order if fname in rows))
    return len(rows)


def _print_table(results: list[dict], summary: dict) -> None:
    say(f"{'fold':<6}" + "".join(f"{k:>12}" for k in METRICS))
    for r in results:
        say(f"{r['fold']:<6}" + "".join(f"{r[k]:>12.4f}" for k in METRICS))
    for stat in ("mean", "std"):
        say(f"{stat:<6}" + "".join(f"{summary[k][stat]:>12.4f}" for k in METRICS))


def main(args: list[str]) -> dict:
    own, rest = split_options(args, ("--cv.", "-h", "--help"))
    parser = verb_parser("cv", __doc__)
    parser.add_function_arguments(cv_options, "cv")
    options = cv_options(**parser.parse_args(own).cv.as_dict())
    from lightning_summ.commands.lightning import run_cli

    probe = run_cli(rest, run=False)  # resolves the config once: where the runs go, which file is split
    logger, data = probe.trainer.logger, probe.datamodule
    if logger is None or not hasattr(logger, "save_dir"):
        raise ConfigError("cv needs a logger with a save_dir (the default TensorBoardLogger), not --trainer.logger "
                          f"{type(logger).__name__ if logger else 'false'}")
    if not data.train_path:
        raise ConfigError("cv splits data.train_path, which is not set")
    logger_name = f"{logger.name}/cv"
    cv_dir = Path(logger.save_dir) / logger_name
    results = []
    for fold in range(options["num_folds"]):
        fold_dir = cv_dir / f"fold_{fold}"
        done = fold_dir / "result.json"
        if done.is_file():
            say(f"cv: fold {fold} is done ({done}); skipping")
            results.append(json.loads(done.read_text()))
            continue
        results.append(run_fold(fold, options["num_folds"], rest, fold_dir, logger_name, options["predict"]))
    summary = summarize(results)
    summary["oof_rows"] = merge_oof(results, data.train_path, cv_dir / "oof.csv")
    with atomic_write(cv_dir / "cv_summary.json") as f:
        json.dump(summary, f, indent=2)
    _print_table(results, summary)
    say(f"Wrote {cv_dir / 'cv_summary.json'} and {summary['oof_rows']} out-of-fold summaries to {cv_dir / 'oof.csv'}")
    return summary
