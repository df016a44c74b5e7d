"""One pipeline member (beside the commands: it runs `cv`, `fit` and `predict`): k folds through ``cv``
(out-of-fold ROUGE, every fold predicts the predict file) or one fit (ROUGE on the validation file, the
best checkpoint predicts the predict file). ``predict`` is the one way the pipeline decodes a file with
a member's checkpoint (the API rows, soft voting, TTA)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from lightning_summ.errors import ConfigError

METRICS = ("r1", "r2", "rl", "rouge_mean")


def member_args(member: dict, member_dir: Path) -> list[str]:
    """fit's flags for the member: its config, its overrides, its runs under the member directory."""
    return ["--config", member["config"], *member["overrides"],
            f"--trainer.logger.init_args.save_dir={member_dir}", f"--trainer.logger.init_args.name={member['name']}"]


def predict(member: dict, member_dir: Path, ckpt: str, out_dir: Path, extra: Sequence[str] = ()) -> dict:
    """``predict`` with the member's config and ``ckpt`` into ``out_dir`` (its own folder: the candidates
    file is written beside the submission). ``extra``: more flags (``--data.predict_path``, soft voting,
    TTA). Returns the written files and the CLI (its callbacks hold what TTA did)."""
    from lightning_summ.commands.lightning import run_cli

    out = out_dir / "submission.csv"
    version = out_dir.relative_to(member_dir).as_posix() if out_dir.is_relative_to(member_dir) else out_dir.name
    cli = run_cli(["predict", *member_args(member, member_dir), f"--trainer.logger.init_args.version={version}",
                   f"--ckpt_path={ckpt}", f"--submission.output_path={out}", *extra])
    return {"submission": str(out), "candidates": str(out.with_name("candidates.jsonl")), "cli": cli}


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
            "multi_ref": probe.model.evaluation.multi_ref, "predict_path": probe.datamodule.predict_path}
    del probe
    start = time.time()
    scored = _run_folds(member, args) if member["folds"] else _run_single(member, args, member_dir, info)
    return {**info, **scored, "train_seconds": time.time() - start}


def _run_folds(member: dict, args: list[str]) -> dict:
    from lightning_summ.commands import cv

    summary = cv.main([*args, f"--cv.num_folds={member['folds']}", "--cv.predict=true"])
    folds = summary["folds"]
    return {"kind": f"{member['folds']}-fold", "parameters": checkpoint_parameters(folds[0]["checkpoint"]),
            "scores": {k: summary[k]["mean"] for k in METRICS}, "score_of": "out-of-fold",
            "checkpoints": [f["checkpoint"] for f in folds], "candidates": [f["test_candidates"] for f in folds],
            "submissions": [f["test_submission"] for f in folds]}


def _run_single(member: dict, args: list[str], member_dir: Path, info: dict) -> dict:
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
    val = predict(member, member_dir, ckpt, member_dir / "predict_val", [f"--data.predict_path={val_path}"])
    test = predict(member, member_dir, ckpt, member_dir / "predict_test")
    scores = rouge_from_files(val["submission"], val_path, tokenizer=info["rouge_tokenizer"],
                              multi_ref=info["multi_ref"])
    return {"kind": "single fit", "parameters": parameters(fit.model), "scores": {k: scores[k] for k in METRICS},
            "score_of": "validation", "checkpoints": [ckpt], "candidates": [test["candidates"]],
            "submissions": [test["submission"]],
            "samples_per_s": speed.get("train", {}).get("samples_per_s"), "peak_mem_gb": speed.get("peak_mem_gb")}
