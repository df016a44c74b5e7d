"""The shipped quickstart, as a new user runs it (issue 13, part 2): ``fit`` then ``predict`` on
``configs/quickstart.yaml`` unchanged, and the model must read its input: its test summaries differ
per dialogue and name the people, times, places and items of their own dialogue. Also: the shipped
synthetic tokenizer is what the documented command builds."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

from conftest import QUICKSTART, REPO
from lightning_summ.commands import main

SAMPLE_DATA = REPO / "lightning_summ" / "sample_data"
TOKENIZER = REPO / "lightning_summ" / "assets" / "synthetic-tokenizer"


def synthetic_test_rows() -> dict[str, dict]:
    """The generator's test rows by fname, with ``facts``: the slot values each summary must name."""
    spec = importlib.util.spec_from_file_location("make_synthetic", SAMPLE_DATA / "make_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {row["fname"]: row for row in module.generate()["test"]}


def test_shipped_synthetic_tokenizer_is_what_the_documented_command_builds(tmp_path):
    """assets/README.md's command: the same 1,000-token BPE, byte for byte."""
    from lightning_summ.data.tokenizer_training import main as train_tokenizer

    train_tokenizer([str(tmp_path / "tok"), str(SAMPLE_DATA / "synthetic_train.csv"), "--vocab_size", "1000"])
    shipped = json.loads((TOKENIZER / "tokenizer.json").read_text(encoding="utf-8"))
    assert json.loads((tmp_path / "tok" / "tokenizer.json").read_text(encoding="utf-8")) == shipped
    assert len(shipped["model"]["vocab"]) == 1000


def test_quickstart_model_reads_its_input(tmp_path, monkeypatch, capsys):
    """The full quickstart (4 epochs of the 1.3M-parameter BART on 2,400 synthetic dialogues, about
    1.5 min on 2 CPU cores), then predict on the 40 synthetic test dialogues. None of them is a
    training dialogue (tests/test_pipeline_quickstart_data.py), so the right names, places and
    times can only come from reading each dialogue."""
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(QUICKSTART)])
    best = capsys.readouterr().out.split("Best checkpoint: ", 1)[1].split("\n", 1)[0]
    submission = tmp_path / "submission.csv"
    main(["predict", "--config", str(QUICKSTART), "--ckpt_path", best, "--submission.output_path", str(submission)])
    with open(submission, newline="", encoding="utf-8") as f:
        predictions = {row["fname"]: row["summary"] for row in csv.DictReader(f)}
    rows = synthetic_test_rows()
    assert predictions.keys() == rows.keys()
    # The former quickstart wrote one summary for all 40 dialogues.
    assert len(set(predictions.values())) >= 36, sorted(set(predictions.values()))
    named_all = [fname for fname, row in rows.items() if all(fact in predictions[fname] for fact in row["facts"])]
    assert len(named_all) >= 30, {f: (predictions[f], rows[f]["facts"]) for f in rows if f not in named_all}
