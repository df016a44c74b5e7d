"""End-to-end CLI: fit -> predict -> test -> score on the shipped sample data, plus bad input.
(The command line's help, option types and error table: tests/test_commands.py.)"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import QUICKSTART, TINY, shared_file
from lightning_summ.commands import main
from lightning_summ.io import read_examples
from lightning_summ.paths import resolve_path


def _fit(cli_run, *extra):
    cli = cli_run("fit", "--trainer.max_epochs=2", "--trainer.limit_train_batches=3",
                  "--model.init_args.evaluation.generate_every_n_epochs=1",
                  *extra)
    return cli, cli.trainer.checkpoint_callback.best_model_path


def test_fit_logs_to_tensorboard_then_predict_writes_submission_in_input_order(cli_run, tmp_path, capsys):
    cli, best = _fit(cli_run)
    out = capsys.readouterr().out
    assert f"Best checkpoint: {best}" in out and Path(best).is_file()
    run_dir = tmp_path / cli.trainer.log_dir
    assert run_dir.parent == tmp_path / "logs" / "quickstart" and (run_dir / "config.yaml").is_file()

    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/loss", "val/rouge_mean", "val/r1", "val/r2", "val/rl", "hp_metric"} <= scalars
    assert len(events.Scalars("val/rouge_mean")) == 2  # one per epoch
    text = [t for t in events.Tags()["tensors"] if t.startswith("val/samples")]
    assert text, "validation should log a text table of predictions vs references"
    # TensorBoard's HParams plugin: the experiment (setting names) and the run's values
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(events.summary_metadata)

    cli = cli_run("predict", "--ckpt_path", best)
    out = capsys.readouterr().out
    sub = Path(cli.trainer.log_dir) / "submission.csv"  # relative to tmp_path, the cwd
    inputs = read_examples(resolve_path("pkg://sample_data/test.csv"))
    assert f"Wrote {len(inputs)} summaries to {sub}" in out
    with open(sub, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["fname"] for r in rows] == [ex.fname for ex in inputs]
    cands = [json.loads(line) for line in (sub.parent / "candidates.jsonl").read_text().splitlines()]
    assert [c["fname"] for c in cands] == [r["fname"] for r in rows]
    assert all(c["candidates"][0]["text"] == c["summary"] and isinstance(c["candidates"][0]["score"], float) for c in cands)


def test_test_stage_reports_rouge_and_num_return_sequences_reach_candidates(cli_run, capsys, tmp_path):
    _, best = _fit(cli_run, "--trainer.max_epochs=1")
    cli = cli_run("test", "--ckpt_path", best)
    assert "test/rouge_mean" in cli.trainer.callback_metrics
    cli = cli_run("predict", "--ckpt_path", best, "--model.init_args.generation.num_beams=3",
                  "--model.init_args.generation.num_return_sequences=3", f"--submission.output_path={tmp_path}/s.csv")
    cands = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert all(len(c["candidates"]) == 3 for c in cands)
    scores = [c["candidates"][0]["score"] for c in cands]
    assert all(c["candidates"][0]["score"] >= c["candidates"][-1]["score"] for c in cands), scores


def test_predict_on_competition_test_file_keeps_all_rows_in_order(cli_run, capsys):
    """The Done-when check: 499 rows of the real test file, in input order."""
    test_csv = shared_file("ko_dialogsum_competition_2025", "test.csv")
    _, best = _fit(cli_run, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1")
    cli = cli_run("predict", "--ckpt_path", best, f"--data.predict_path={test_csv}",
                  "--model.init_args.generation.max_new_tokens=4", "--data.eval_batch_size=128")
    with open(Path(cli.trainer.log_dir) / "submission.csv", newline="", encoding="utf-8") as f:
        fnames = [r["fname"] for r in csv.DictReader(f)]
    assert fnames == [ex.fname for ex in read_examples(test_csv)] and len(fnames) == 499


def _bad_csv(tmp_path, content: bytes, name="bad.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("content, expected", [
    (b"fname,summary\nx_1,hi\n", "header: missing column 'dialogue'"),
    (b"", "the file is empty"),
    ('fname,dialogue,summary\nx_1,"",요약\n'.encode(), "row 1 (fname 'x_1'): field 'dialogue' is empty"),
    ("fname,dialogue,summary\nx_1,대화,요약\n".encode("cp949"), "line 2: not valid UTF-8"),
    ('fname,dialogue,summary\nx_1,"a\nb",s\nx_1,c,s\n'.encode(),
     "row 2: field 'fname': duplicate 'x_1' (first at row 1)"),
])
def test_bad_predict_input_fails_with_one_line_and_writes_nothing(tmp_path, content, expected, capsys, monkeypatch):
    bad = _bad_csv(tmp_path, content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--config", str(QUICKSTART), *TINY, f"--data.predict_path={bad}",
              f"--submission.output_path={tmp_path}/out/submission.csv"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("lightning_summ: error: ") and str(bad) in last and expected in last, last
    assert not (tmp_path / "out").exists()


def test_missing_file_exits_2_with_one_line_from_the_console_script(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_summ", "fit", "--config", str(QUICKSTART), *TINY,
         f"--data.train_path={tmp_path}/nope.csv", f"--trainer.logger.init_args.save_dir={tmp_path}/logs"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"lightning_summ: error: {tmp_path}/nope.csv: no such file"


def test_score_command_last_line_is_json(tmp_path, capsys):
    refs = resolve_path("pkg://sample_data/dev.csv")
    pred = tmp_path / "pred.csv"
    examples = read_examples(refs)
    with open(pred, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["fname", "summary"])
        w.writerows([ex.fname, ex.summaries[0]] for ex in examples)
    main(["score", "--predictions", str(pred), "--references", refs, "--tokenizer", "whitespace"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rouge_mean"] == pytest.approx(100.0) and result["n"] == len(examples)
    assert set(result) >= {"r1", "r2", "rl", "rouge_mean", "rouge_sum"}


def test_soft_voting_predict_over_fold_checkpoints(cli_run, tmp_path):
    """The same checkpoint twice must decode exactly like the single model; two different ones differ."""
    _, first = _fit(cli_run, "--trainer.max_epochs=1", "--model.init_args.optimizer.lr=5e-3")
    _, second = _fit(cli_run, "--trainer.max_epochs=1", "--seed_everything=7", "--data.seed=7",
                     "--model.init_args.optimizer.lr=5e-3")
    beams = ["--model.init_args.generation.num_beams=3"]
    outputs = {}
    for name, members in {"single": "[]", "same": f"[{first}]", "pair": f"[{second}]"}.items():
        cli_run("predict", "--ckpt_path", first, *beams, f"--model.init_args.ensemble_checkpoints={members}",
                f"--submission.output_path={tmp_path}/{name}.csv")
        outputs[name] = (tmp_path / f"{name}.csv").read_text(encoding="utf-8")
    assert outputs["single"] == outputs["same"]
    assert outputs["pair"] != outputs["single"] and outputs["pair"].count("\n") == outputs["single"].count("\n")


def test_speed_monitor_reports_train_validation_and_predict(cli_run, tmp_path):
    speed = ["--trainer.callbacks+=lightning_summ.callbacks.SpeedMonitor", "--trainer.callbacks.warmup_steps=1"]
    _, best = _fit(cli_run, *speed, f"--trainer.callbacks.output_path={tmp_path}/fit.json")
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["train"]["steps"] == 2 * 3 - 1 and fit["train"]["samples"] > 0 and fit["train"]["tokens_per_s"] > 0
    assert fit["validation"]["samples"] == 2 * 40 and fit["device"] == "cpu" and fit["peak_mem_gb"] is None
    assert "batches" not in fit["train"]
    # the warm-up batch (where a compile would show) is timed apart from the steady rate
    assert fit["train_warmup"]["steps"] == 1 and fit["train_warmup"]["seconds"] > 0
    losses = fit["train_loss"]  # every batch's loss was read: finite, the last one kept
    assert losses["batches"] == 2 * 3 and losses["nonfinite"] == 0 and 0 < losses["last"] < 20
    cli_run("predict", "--ckpt_path", best, *speed, f"--trainer.callbacks.output_path={tmp_path}/predict.json",
            "--trainer.callbacks.per_batch=true")
    predict = json.loads((tmp_path / "predict.json").read_text())
    assert predict["predict"]["samples"] == 40 and predict["predict"]["tokens"] > 0
    batches = predict["predict"]["batches"]
    assert sum(n for n, _ in batches) == 40 and abs(sum(s for _, s in batches) - predict["predict"]["seconds"]) < 0.01
