"""Resume after a crash, exactly: a fit killed with SIGKILL at a step the test chooses, then
``fit --ckpt_path last``, ends with the same weights, the same validation scores and the same
best-model record as the same fit run in one go, in the same run directory.

Exact (``torch.equal``) because everything runs in fp32 on one CPU process with the same thread
count (``OMP_NUM_THREADS=1``): the same operations in the same order give the same bits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from conftest import CONFIGS, QUICKSTART, REPO, TINY

TESTS = Path(__file__).resolve().parent


class KillAfterStep(Callback):
    """SIGKILLs its own process at the start of step ``$KILL_AFTER_STEP + 1``, once the
    ``last.ckpt`` of step ``$KILL_AFTER_STEP`` is on disk: a crash, with no chance to clean up."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = int(os.environ["KILL_AFTER_STEP"])
        if trainer.global_step != step:
            return
        last = Path(trainer.log_dir) / "checkpoints" / "last.ckpt"
        saved = torch.load(last, map_location="cpu", weights_only=False)
        assert saved["global_step"] == step, (saved["global_step"], step)
        os.kill(os.getpid(), signal.SIGKILL)


def small_config(tmp_path: Path, source: Path, every_n_train_steps: int) -> Path:
    """``source`` with ``last.ckpt`` written every ``every_n_train_steps`` steps."""
    text = source.read_text()
    start = text.index("every_n_train_steps: ") + len("every_n_train_steps: ")
    end = text.index("}", start)
    config = tmp_path / f"resume-{source.name}"
    config.write_text(text[:start] + str(every_n_train_steps) + text[end:])
    return config


def fit(cwd: Path, args: list[str], kill_after: int | None = None) -> subprocess.CompletedProcess:
    return run(cwd, ["fit", *args], kill_after)


def run(cwd: Path, args: list[str], kill_after: int | None = None) -> subprocess.CompletedProcess:
    """``lightning_summ <args>`` in a subprocess; with ``kill_after`` it SIGKILLs itself after that step."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), "OMP_NUM_THREADS": "1"}
    extra = []
    if kill_after is not None:
        env["KILL_AFTER_STEP"] = str(kill_after)
        extra = ["--trainer.callbacks+=test_resume.KillAfterStep"]
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "lightning_summ", *args, *extra],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def assert_same_run(straight: Path, resumed: Path) -> None:
    ours, reference = final_state(resumed), final_state(straight)
    assert ours["global_step"] == reference["global_step"]
    assert ours["state_dict"].keys() == reference["state_dict"].keys()
    for name, value in reference["state_dict"].items():
        assert torch.equal(ours["state_dict"][name], value), name
    for tag in ("val/loss", "val/rouge_mean"):
        assert scalars(resumed, tag) == scalars(straight, tag), tag
    # The best-model record (GenerationCheckpoint's) survived the crash: same score, same file name.
    best = [key for key in reference["callbacks"] if key.startswith("GenerationCheckpoint")]
    assert best and ours["callbacks"][best[0]]["best_model_score"] == reference["callbacks"][best[0]]["best_model_score"]
    assert Path(ours["callbacks"][best[0]]["best_model_path"]).name == \
        Path(reference["callbacks"][best[0]]["best_model_path"]).name


QUICK = [*TINY, "--trainer.max_epochs=2", "--trainer.limit_train_batches=5", "--trainer.limit_val_batches=1",
         "--model.init_args.evaluation.generate_every_n_epochs=1", "--trainer.log_every_n_steps=1"]


def test_seq2seq_fit_killed_mid_epoch_resumes_to_the_same_weights_and_scores(tmp_path):
    config = small_config(tmp_path, QUICKSTART, every_n_train_steps=3)
    args = ["--config", str(config), *QUICK]
    straight = fit(tmp_path / "straight", args)
    assert straight.returncode == 0, straight.stderr[-3000:]
    # Step 6 is the first batch of epoch 1 (5 batches an epoch): a mid-epoch checkpoint, taken after
    # epoch 0's validation and best checkpoint.
    killed = fit(tmp_path / "crash", args, kill_after=6)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_dir = tmp_path / "crash" / "logs" / "quickstart" / "version_0"
    assert final_state(run_dir)["global_step"] == 6
    resumed = fit(tmp_path / "crash", [*args, "--ckpt_path=last"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming {Path('logs/quickstart/version_0')}" in resumed.stdout
    assert "dirpath has changed" not in resumed.stderr and "not resumable" not in resumed.stderr
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["version_0"]  # the same TensorBoard run
    assert_same_run(tmp_path / "straight" / "logs" / "quickstart" / "version_0", run_dir)


def test_lora_fit_killed_resumes_from_its_adapter_only_checkpoint_exactly(tmp_path):
    from test_cli_causal import tiny_pretrained

    model_dir = tiny_pretrained(tmp_path / "model", "qwen3-4b.json", chat=True)
    config = small_config(tmp_path, CONFIGS / "qwen3-4b-lora-bf16.yaml", every_n_train_steps=1)
    args = ["--config", str(config), f"--model.init_args.pretrained={model_dir}", "--model.init_args.max_length=320",
            "--model.init_args.generation.max_new_tokens=4", "--model.init_args.evaluation.generate_limit=4",
            "--data.train_path=pkg://sample_data/train.csv", "--data.val_path=pkg://sample_data/dev.csv",
            "--data.batch_size=4", "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=1",
            "--trainer.num_sanity_val_steps=0", "--trainer.max_epochs=2", "--trainer.accumulate_grad_batches=1",
            "--trainer.precision=32-true", "--trainer.log_every_n_steps=1"]
    straight = fit(tmp_path / "straight", args)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = fit(tmp_path / "crash", args, kill_after=5)  # mid epoch 1 (4 steps an epoch); LoRA dropout is on
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_dir = tmp_path / "crash" / "logs" / "qwen3-4b-lora-bf16" / "version_0"
    saved = final_state(run_dir)["state_dict"]
    assert saved and all("lora_" in k or "trainable_tokens" in k for k in saved)  # adapter only
    resumed = fit(tmp_path / "crash", [*args, "--ckpt_path=last"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["version_0"]
    assert_same_run(tmp_path / "straight" / "logs" / "qwen3-4b-lora-bf16" / "version_0", run_dir)


def test_cv_killed_mid_fold_resumes_that_fold_without_a_stale_checkpoint(tmp_path):
    config = small_config(tmp_path, QUICKSTART, every_n_train_steps=2)
    args = ["cv", "--cv.num_folds=2", "--config", str(config), *TINY, "--trainer.max_epochs=1",
            "--data.batch_size=16", "--trainer.limit_train_batches=4",  # 75 rows a fold: 4 of its 5 batches
            "--trainer.limit_val_batches=1",
            "--model.init_args.evaluation.generate_every_n_epochs=1"]

    def cv(cwd: Path, kill_after: int | None = None) -> subprocess.CompletedProcess:
        return run(cwd, args, kill_after)

    straight = cv(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = cv(tmp_path / "crash", kill_after=2)  # fold 0, halfway through its epoch
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    fold0 = tmp_path / "crash" / "logs" / "quickstart" / "cv" / "fold_0"
    assert final_state(fold0)["global_step"] == 2 and not (fold0 / "result.json").exists()
    rerun = cv(tmp_path / "crash")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "cv: resuming the unfinished fold" in rerun.stdout
    reference = tmp_path / "straight" / "logs" / "quickstart" / "cv" / "fold_0"
    # One best checkpoint and last.ckpt, as in the uninterrupted fold: nothing left from the killed run.
    assert sorted(p.name for p in (fold0 / "checkpoints").iterdir()) == \
        sorted(p.name for p in (reference / "checkpoints").iterdir())
    assert_same_run(reference, fold0)
    import json

    ours, theirs = (json.loads((d / "result.json").read_text()) for d in (fold0, reference))
    assert {k: ours[k] for k in ("r1", "r2", "rl")} == {k: theirs[k] for k in ("r1", "r2", "rl")}


def test_ckpt_path_last_with_nothing_to_resume_exits_2_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import pytest

    from lightning_summ.commands import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs" / "quickstart" / "version_0").mkdir(parents=True)  # a run that never checkpointed
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(QUICKSTART), *TINY, "--ckpt_path=last"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lightning_summ: error: --ckpt_path last: nothing to resume") \
        and "logs/quickstart/version_*/checkpoints/last.ckpt" in err[0] and "--ckpt_path auto" in err[0], err
    assert sorted(p.name for p in (tmp_path / "logs" / "quickstart").iterdir()) == ["version_0"]


def test_ckpt_path_auto_starts_a_new_run_when_there_is_nothing_to_resume(tmp_path, monkeypatch, capsys):
    from lightning_summ.commands.lightning import run_cli

    monkeypatch.chdir(tmp_path)
    cli = run_cli(["fit", "--config", str(QUICKSTART), *TINY, "--ckpt_path=auto", "--trainer.max_epochs=1",
                   "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"])
    assert "Nothing to resume under logs/quickstart: starting a new run" in capsys.readouterr().out
    assert cli.trainer.global_step == 1 and (Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt").is_file()
