"""k-fold cross-validation through the CLI on the quickstart config (2 folds, tiny model)."""

from __future__ import annotations

import csv
import json
import warnings

import pytest

from conftest import QUICKSTART, TINY
from lightning_summ.commands import main
from lightning_summ.io import read_examples
from lightning_summ.paths import resolve_path

ARGS = ["--config", str(QUICKSTART), *TINY, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
        "--model.init_args.evaluation.generate_every_n_epochs=1"]


def test_cv_runs_every_fold_writes_oof_and_summary_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["cv", "--cv.num_folds", "2", "--cv.predict", "true", *ARGS])
    # Regression: LightningCLI warned "args parameter is intended ..." once per fold and stage (7 times).
    assert [str(w.message) for w in caught if "args parameter" in str(w.message)] == []
    out = capsys.readouterr().out
    cv_dir = tmp_path / "logs" / "quickstart" / "cv"
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    assert summary["num_folds"] == 2 and [f["fold"] for f in summary["folds"]] == [0, 1]
    assert set(summary["rouge_mean"]) == {"mean", "std"}
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in (["0"], ["1"], ["mean"], ["std"])}
    assert float(table["mean"][3]) == pytest.approx(summary["rouge_mean"]["mean"], abs=1e-4)
    assert float(table["0"][3]) == pytest.approx(summary["folds"][0]["rouge_mean"], abs=1e-4)

    train = read_examples(resolve_path("pkg://sample_data/train.csv"))
    assert f"Wrote {cv_dir.relative_to(tmp_path) / 'cv_summary.json'} and {len(train)} out-of-fold summaries" in out
    heldout = [[ex.fname for ex in read_examples(cv_dir / f"fold_{k}" / "heldout.csv")] for k in range(2)]
    assert not set(heldout[0]) & set(heldout[1]) and len(heldout[0]) + len(heldout[1]) == len(train)
    with open(cv_dir / "oof.csv", newline="", encoding="utf-8") as f:
        assert [r["fname"] for r in csv.DictReader(f)] == [ex.fname for ex in train]  # each row once, in order
    for k in range(2):
        fold = cv_dir / f"fold_{k}"
        assert (fold / "config.yaml").is_file() and list(fold.glob("events.out.tfevents.*"))
        assert (fold / "test_submission.csv").is_file() and (fold / "candidates.jsonl").is_file()
        assert summary["folds"][k]["n"] == len(heldout[k])
        # the stable name soft voting uses: the same bytes as the callback's best checkpoint
        best = fold / "best.ckpt"
        assert summary["folds"][k]["checkpoint"] == str(best.relative_to(tmp_path))
        assert [p.read_bytes() == best.read_bytes() for p in (fold / "checkpoints").glob("best-*.ckpt")] == [True]

    # An interrupted run: fold 1 unfinished. Rerunning skips fold 0 and redoes fold 1 only.
    (cv_dir / "fold_1" / "result.json").unlink()
    main(["cv", "--cv.num_folds", "2", *ARGS])
    out = capsys.readouterr().out
    assert "fold 0 is done" in out and "fold 1 is done" not in out
    assert json.loads((cv_dir / "fold_1" / "result.json").read_text())["fold"] == 1
