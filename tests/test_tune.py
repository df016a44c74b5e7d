"""``lightning_summ tune``: real Optuna studies in SQLite files under tmp_path, on the tiny quickstart."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import optuna
import pytest

from conftest import QUICKSTART, REPO, TINY
from lightning_summ.commands import tune
from lightning_summ.errors import ConfigError

FAST = ["--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--trainer.callbacks=[]", "--trainer.num_sanity_val_steps=0"]
# lr 1e-6 barely moves the loss, 3e-3 lowers it at once: the bad trials are clearly worse.
SPACE = "model.init_args.optimizer.lr: {type: categorical, choices: [1.0e-6, 3.0e-3]}\n"


def tune_args(tmp_path, *extra: str) -> list[str]:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return ["--config", str(QUICKSTART), *TINY, *FAST, f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
            f"--tune.space={space}", "--tune.metric=val/loss", "--tune.direction=minimize", *extra]


def load(tmp_path) -> optuna.Study:
    db = tmp_path / "logs" / "quickstart" / "tune" / "study" / "study.db"
    return optuna.load_study(study_name="study", storage=f"sqlite:///{db}")


def test_pruning_and_a_runnable_best_config(tmp_path, monkeypatch, cli_run):
    monkeypatch.chdir(tmp_path)
    summary = tune.main(tune_args(tmp_path, "--trainer.max_epochs=2", "--tune.n_trials=3",
                                  "--tune.n_startup_trials=1"))
    study = load(tmp_path)
    states = {t.number: t.state.name for t in study.trials}
    assert len(states) == 3 and "PRUNED" in states.values() and "COMPLETE" in states.values()
    for t in study.trials:  # the pruned ones are the bad lr, stopped after their first epoch
        assert (t.state.name == "PRUNED") == (t.params["model.init_args.optimizer.lr"] == 1e-6)
        assert (tmp_path / "logs" / "quickstart" / "tune" / "study" / f"trial_{t.number}").is_dir()
    assert summary["best_params"] == {"model.init_args.optimizer.lr": 3e-3}
    cli = cli_run("fit", "--trainer.fast_dev_run=true", config=summary["best_config"], tiny=False)
    assert cli.model.optim.lr == 3e-3
    assert cli.trainer.state.finished


def test_two_workers_share_one_study(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-m", "lightning_summ", "tune",
                                 *tune_args(tmp_path, "--trainer.max_epochs=1", "--tune.n_trials=3",
                                            "--tune.pruner=none", f"--tune.seed={seed}")],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for seed in (0, 1)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ran = [int(n) for out in outputs for n in re.findall(r"^tune: trial (\d+) complete", out, re.M)]
    assert sorted(ran) == [0, 1, 2]  # every trial run once, by one worker
    study = load(tmp_path)
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    assert all(t.state.name == "COMPLETE" for t in study.trials)


def test_bad_space_is_one_clear_error(tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text("data.batch_size: {type: categorical}\n")
    with pytest.raises(ConfigError, match=r"space.yaml: data.batch_size: missing \['choices'\]"):
        tune.read_space(str(bad))
    bad.write_text("model.init_args.optimizer.lr: {type: normal, low: 0, high: 1}\n")
    with pytest.raises(ConfigError, match="'type' must be one of float, int, categorical"):
        tune.read_space(str(bad))
    proc = subprocess.run([sys.executable, "-m", "lightning_summ", "tune", "--tune.space", str(tmp_path / "none.yaml")],
                          cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "none.yaml" in proc.stderr


def test_a_multi_device_trainer_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="one worker per GPU"):
        tune.main(tune_args(tmp_path, "--tune.n_trials=1", "--trainer.accelerator=cpu", "--trainer.devices=2"))
    assert not (tmp_path / "logs" / "quickstart" / "tune").exists()
