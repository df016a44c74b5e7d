"""Two CPU processes (DDP over gloo) through the real command line: every rank joins the collective
calls, rank zero alone writes, and the output holds every row once, in input order."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import QUICKSTART, REPO, TINY
from lightning_summ.io import read_examples, read_submission
from lightning_summ.paths import resolve_path


def test_predict_on_two_processes_writes_the_default_submission_once_in_input_order(cli_run, tmp_path):
    cli = cli_run("fit", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
                  "--model.init_args.evaluation.generate_every_n_epochs=1")
    best = cli.trainer.checkpoint_callback.best_model_path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    # No --submission.output_path: the writer asks the Trainer for its log directory (a collective call).
    proc = subprocess.run([sys.executable, "-m", "lightning_summ", "predict", "--config", str(QUICKSTART), *TINY,
                           f"--ckpt_path={best}", "--trainer.accelerator=cpu", "--trainer.devices=2",
                           "--trainer.strategy=ddp", "--data.eval_batch_size=8"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = [line for line in proc.stdout.splitlines() if line.startswith("Wrote ")]
    assert len(written) == 1 and written[0].endswith("submission.csv"), proc.stdout[-2000:]  # rank zero only
    path = tmp_path / written[0].split(" to ", 1)[1]
    expected = [ex.fname for ex in read_examples(resolve_path("pkg://sample_data/test.csv"))]
    assert list(read_submission(path)) == expected
