"""One pipeline member (beside the commands: it runs `cv` and `fit`): k folds through ``cv`` (out-of-fold ROUGE, every fold predicts the predict file) or
one fit (ROUGE on the validation file, the best checkpoint predicts the predict file)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from lightning_summ.errors import ConfigError

METRICS = ("r1", "r2", "rl", "rouge_mean")


def member_args(member: dict, member_dir: Path) -> list[str]:
    """fit's flags for the member: its config, its overrides, its runs under the member directory."""
    return ["--config", member["config"], *member["overrides"],
            f"--trainer.logger.init_args.save_dir={member_dir}", f"--trainer.logger.init_args.name={member['name']}"]


def parameters(model) -> dict:
    return {"total": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def checkpoint_parameters(ckpt: str) -> dict:
    """Numbers saved in a fold's checkpoint (the cv folds' models are gone by now), tied tensors once:
    parameters and buffers for full fine-tuning, only the trainable ones for adapter-only checkpoints."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    unique = {t.untyped_storage().data_ptr(): t.numel() for t in state.values()}  # tied weights once
    return {"in_checkpoint": sum(unique.values())}


def run_member(member: dict, member_dir: Path) -> dict:
    from lightning_summ.commands.lightning import run_cli

    args = member_args(member, member_dir)
    probe = run_cli(args, run=False)  # the resolved config: parameters, tokenizer, files
    if not probe.datamodule.predict_path:
        raise ConfigError(f"member {member['name']}: data.predict_path is not set (the pipeline predicts it)")
    info = {"rouge_tokenizer": probe.model.evaluation.rouge_tokenizer,
            "multi_ref": probe.model.evaluation.multi_ref}
    del probe
    start = time.time()
    scored = _run_folds(member, args) if member["folds"] else _run_single(args, member_dir, info)
    return {**info, **scored, "train_seconds": time.time() - start}


def _run_folds(member: dict, args: list[str]) -> dict:
    from lightning_summ.commands import cv

    summary = cv.main([*args, f"--cv.num_folds={member['folds']}", "--cv.predict=true"])
    return {"kind": f"{member['folds']}-fold", "parameters": checkpoint_parameters(summary["folds"][0]["checkpoint"]), "scores": {k: summary[k]["mean"] for k in METRICS},
            "score_of": "out-of-fold", "candidates": [f["test_candidates"] for f in summary["folds"]],
            "submissions": [f["test_submission"] for f in summary["folds"]]}


def _run_single(args: list[str], member_dir: Path, info: dict) -> dict:
    from lightning_summ.commands.lightning import run_cli
    from lightning_summ.metrics.rouge import rouge_from_files

    speed_file = member_dir / "speed.json"
    fit = run_cli(["fit", *args, "--trainer.logger.init_args.version=fit",
                   "--trainer.callbacks+=lightning_summ.callbacks.speed.SpeedMonitor",
                   f"--trainer.callbacks.output_path={speed_file}"])
    best = fit.trainer.checkpoint_callback.best_model_path if fit.trainer.checkpoint_callback else ""
    ckpt = best or str(member_dir / "final.ckpt")
    if not best:
        fit.trainer.save_checkpoint(ckpt)
    val_path = fit.datamodule.val_path
    if not val_path:
        raise ConfigError("a member without folds needs data.val_path (its score)")
    speed = json.loads(speed_file.read_text()) if speed_file.is_file() else {}
    val_out, test_out = member_dir / "val_submission.csv", member_dir / "test_submission.csv"
    run_cli(["predict", *args, "--trainer.logger.init_args.version=predict_val", f"--data.predict_path={val_path}",
             f"--ckpt_path={ckpt}", f"--submission.output_path={val_out}"])
    run_cli(["predict", *args, "--trainer.logger.init_args.version=predict_test", f"--ckpt_path={ckpt}",
             f"--submission.output_path={test_out}"])
    scores = rouge_from_files(val_out, val_path, tokenizer=info["rouge_tokenizer"], multi_ref=info["multi_ref"])
    return {"kind": "single fit", "parameters": parameters(fit.model), "scores": {k: scores[k] for k in METRICS}, "score_of": "validation",
            "checkpoint": ckpt, "candidates": [str(test_out.with_name("candidates.jsonl"))],
            "submissions": [str(test_out)],
            "samples_per_s": speed.get("train", {}).get("samples_per_s"), "peak_mem_gb": speed.get("peak_mem_gb")}
