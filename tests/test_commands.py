"""The command line as a user meets it: one fast help page with every verb, typed options, one line
and exit 2 for every mistake, output printed once (rank zero), no warnings nobody can act on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

# Imported here, not first inside a test: Lightning's log handler keeps the sys.stderr of the moment it is
# imported, which inside a test is capsys's buffer, closed after that test.
import lightning.pytorch  # noqa: F401
import pytest
from lightning_utilities.core.rank_zero import rank_zero_only

from conftest import QUICKSTART, TINY
from lightning_summ.commands import VERBS, main
from lightning_summ.commands.lightning import run_cli
from lightning_summ.io import Example, read_examples, read_submission_rows, write_candidates, write_examples
from lightning_summ.paths import resolve_path

EVERY_VERB = ["fit", "validate", "test", "predict", "export", "cv", "tune", "ensemble", "score", "pipeline", "serve"]

# Runs the entry point in a fresh interpreter and reports what it imported and how long it took.
HELP_PROBE = """
import sys, time
start = time.perf_counter()
from lightning_summ.commands import main
main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "torch", "transformers", "jsonargparse"))
print("PROBE", repr(heavy), time.perf_counter() - start)
"""


@pytest.mark.parametrize("args", [[], ["--help"], ["-h"]])
def test_help_lists_every_verb_fast_without_importing_lightning(args):
    proc = subprocess.run([sys.executable, "-c", HELP_PROBE, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *page, probe = proc.stdout.strip().splitlines()
    assert list(VERBS) == EVERY_VERB
    for verb in EVERY_VERB:
        assert any(line.split(None, 1)[0] == verb and len(line.split(None, 1)[1]) > 10
                   for line in page if line.startswith("  ")), (verb, page)
    _, heavy, seconds = probe.split(" ", 2)
    assert heavy == "[]"
    assert float(seconds) < 1.0  # importing lightning.pytorch alone takes ~10 s on this machine


def test_module_entry_point_prints_the_same_page():
    proc = subprocess.run([sys.executable, "-m", "lightning_summ", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "  ensemble  " in proc.stdout and "  serve  " in proc.stdout


@pytest.mark.parametrize("verb, options", [
    ("cv", ["--cv.num_folds", "--cv.predict"]),
    ("tune", ["--tune.space", "--tune.n_trials", "--tune.metric", "--tune.storage", "--tune.pruner"]),
    ("serve", ["--ckpt_path", "--serve.port", "--serve.max_batch_size", "--serve.api_key_env"]),
    ("score", ["--predictions", "--references", "--tokenizer", "--multi_ref"]),
    ("ensemble", ["--inputs", "--method", "--weights_from", "--output"]),
    ("fit", ["--trainer.max_epochs", "--data.fold", "--submission.output_path", "--model"]),
    ("predict", ["--ckpt_path", "--data.predict_path"]),
])
def test_verb_help_shows_its_options(verb, options, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lightning_summ") and all(option in out for option in options), out[:500]


def _candidates(path, rows):
    write_candidates(path, [{"fname": f, "summary": t, "candidates": [{"text": t, "score": -1.0}]} for f, t in rows])
    return str(path)


MISTAKES = [  # (arguments, what the one line must say); {tmp} is the test's directory
    (["bogus"], "unknown command 'bogus'"),
    (["cv", "--config", str(QUICKSTART), "--cv.predict", "maybe"], 'Parser key "cv.predict"'),
    (["cv", "--config", str(QUICKSTART), "--cv.num_folds=1"], "--cv.num_folds must be at least 2, got 1"),
    (["cv", "--cv.num_folds", "two"], 'Parser key "cv.num_folds"'),
    (["fit", "--config", str(QUICKSTART), "--trainer.max_epochs", "abc"], 'Parser key "trainer.max_epochs"'),
    (["fit", "--config", str(QUICKSTART), "--no_such_option", "1"], "no_such_option"),
    (["predict", "--config", "{tmp}/missing.yaml"], "missing.yaml"),
    (["score", "--predictions", "{tmp}/p.csv"], "references"),
    (["score", "--predictions", "{tmp}/p.csv", "--references", "{tmp}/r.csv", "--multi_ref", "median"], "multi_ref"),
    (["ensemble", "--inputs", "{tmp}/a.jsonl", "--weights", "1", "2", "--output", "{tmp}/o.csv"],
     "--weights: 2 weights for 1 --inputs"),
    (["ensemble", "--inputs", "{tmp}/a.jsonl", "--weights_from", "{tmp}/nope.json", "--output", "{tmp}/o.csv"],
     "{tmp}/nope.json: no such file"),
    (["ensemble", "--inputs", "{tmp}/a.jsonl", "--weights", "1", "--weights_from", "{tmp}/r.json", "--output", "{tmp}/o.csv"],
     "give --weights or --weights_from, not both"),
    (["ensemble", "--inputs", "{tmp}/a.jsonl", "--method", "vote", "--output", "{tmp}/o.csv"], "vote"),
    (["serve", "--config", str(QUICKSTART), "--serve.api_key_env", "LIGHTNING_SUMM_TEST_UNSET"],
     "--serve.api_key_env names LIGHTNING_SUMM_TEST_UNSET, which is not set"),
    (["serve", "--serve.port", "eighty"], 'Parser key "serve.port"'),
    # issue 12's list: settings and data options checked when they are built, files before the run
    (["fit", "--config", str(QUICKSTART), "--model.init_args.generation.num_beams", "0"],
     "generation.num_beams must be >= 1, got 0"),
    (["fit", "--config", str(QUICKSTART), "--model.init_args.generation.max_new_tokens", "0"],
     "generation.max_new_tokens must be >= 1, got 0"),
    (["fit", "--config", str(QUICKSTART), "--model.init_args.optimizer.lr", "-1"], "optimizer.lr must be > 0"),
    (["fit", "--config", str(QUICKSTART), "--data.batch_size", "0"], "data.batch_size must be >= 1, got 0"),
    (["fit", "--config", str(QUICKSTART), "--data.batch_size", "-4"], "data.batch_size must be >= 1, got -4"),
    (["fit", "--config", str(QUICKSTART), "--data.fold", "0", "--data.num_folds", "1"], "data.num_folds must be >= 2"),
    (["predict", "--config", str(QUICKSTART), "--ckpt_path", "{tmp}/missing.ckpt"], "{tmp}/missing.ckpt"),
    (["predict", "--config", str(QUICKSTART), "--ckpt_path", "{tmp}/garbage.ckpt"],
     "--ckpt_path {tmp}/garbage.ckpt: not a readable checkpoint"),
    # outputs are probed before anything runs (a.jsonl is a file; nobody may write in /sys, not even root)
    (["predict", "--config", str(QUICKSTART), "--submission.output_path", "{tmp}/a.jsonl/out.csv"],
     "--submission.output_path {tmp}/a.jsonl/out.csv: {tmp}/a.jsonl is a file, not a directory"),
    (["predict", "--config", str(QUICKSTART), "--submission.output_path", "/sys/lightning_summ_test/out.csv"],
     "--submission.output_path /sys/lightning_summ_test/out.csv: cannot write there ("),
    (["predict", "--config", str(QUICKSTART), "--submission.candidates_path", "{tmp}/a.jsonl/c.jsonl"],
     "--submission.candidates_path {tmp}/a.jsonl/c.jsonl: {tmp}/a.jsonl is a file, not a directory"),
    (["predict", "--config", str(QUICKSTART), "--submission.output_path", "{tmp}"],
     "--submission.output_path {tmp}: is a directory, not a file"),
    (["fit", "--config", str(QUICKSTART), "--trainer.logger.init_args.save_dir", "{tmp}/a.jsonl/logs"],
     "--trainer.logger.init_args.save_dir {tmp}/a.jsonl/logs/quickstart/version_0: {tmp}/a.jsonl is a file"),
    (["cv", "--config", str(QUICKSTART), "--trainer.logger.init_args.save_dir", "/sys/lightning_summ_test"],
     "--trainer.logger.init_args.save_dir /sys/lightning_summ_test/quickstart/cv/fold_0: cannot write there ("),
    (["export", "--config", str(QUICKSTART), "--ckpt_path", "{tmp}/garbage.ckpt", "--output_dir", "{tmp}/a.jsonl/x"],
     "--output_dir {tmp}/a.jsonl/x: {tmp}/a.jsonl is a file, not a directory"),
    (["ensemble", "--inputs", "{tmp}/a.jsonl", "--output", "{tmp}/a.jsonl/o.csv"],
     "--output {tmp}/a.jsonl/o.csv: {tmp}/a.jsonl is a file, not a directory"),
    # data files: the delimiter, the record (not the physical line) with its fname; no run directory left
    (["predict", "--config", str(QUICKSTART), "--data.predict_path", "{tmp}/t.tsv"],
     "{tmp}/t.tsv: header: missing column 'fname' (found: 'fname\\tdialogue'; the header looks tab-separated: "
     "lightning_summ reads comma-separated CSV or JSONL)"),
    (["predict", "--config", str(QUICKSTART), "--data.predict_path", "{tmp}/multiline.csv"],
     "{tmp}/multiline.csv: row 3 (fname 'c'): field 'dialogue' is empty"),
    (["fit", "--config", str(QUICKSTART), "--data.val_path", "{tmp}/multiline.csv"],
     "{tmp}/multiline.csv: row 3 (fname 'c'): field 'dialogue' is empty"),
    # refused by the model's own setup, inside the run: the run directory it made is removed again
    (["fit", "--config", str(QUICKSTART), *TINY, "--model.init_args.ensemble_checkpoints=[{tmp}/garbage.ckpt]"],
     "model.ensemble_checkpoints is for validate/test/predict, not fit"),
    # a checkpoint whose tag vocabulary differs from the data's (trained with #Manager#)
    (["predict", "--config", str(QUICKSTART), *TINY, "--ckpt_path", "{ckpt}"],
     "--ckpt_path {ckpt} was made with a different processor: tags = "),
    (["test", "--config", str(QUICKSTART), *TINY, "--ckpt_path", "{ckpt}"],
     "--ckpt_path {ckpt} was made with a different processor: tags = "),
]


@pytest.fixture(scope="module")
def tagged_model(tmp_path_factory) -> dict:
    """A tiny quickstart model trained on a file with a tag the sample data lacks (``#Manager#``)."""
    root = tmp_path_factory.mktemp("tagged")
    examples = read_examples(resolve_path("pkg://sample_data/train.csv"))[:20]
    examples[0].dialogue += "\n#Manager#: 네, 확인했습니다."
    write_examples(root / "train.csv", examples)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        cli = run_cli(["fit", "--config", str(QUICKSTART), *TINY, f"--data.train_path={root / 'train.csv'}",
                       "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=0",
                       "--trainer.enable_progress_bar=false"])
        cli.trainer.save_checkpoint(root / "tagged.ckpt")
    finally:
        os.chdir(cwd)
    return {"ckpt": root / "tagged.ckpt", "train": root / "train.csv"}


def _mistake_files(tmp_path) -> None:
    _candidates(tmp_path / "a.jsonl", [("x", "요약")])
    (tmp_path / "garbage.ckpt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    (tmp_path / "t.tsv").write_text("fname\tdialogue\nx\t#Person1#: 안녕\n", encoding="utf-8")
    # Records a (lines 2-4), b (lines 5-6), c (line 7): the third record starts on the seventh line.
    (tmp_path / "multiline.csv").write_text('fname,dialogue,summary\na,"#Person1#: 하나\n#Person2#: 둘\n#Person1#: 셋",'
                                            'x\nb,"#Person1#: 넷\n#Person2#: 다섯",y\nc,,z\n', encoding="utf-8")


def _mistake_id(args: list[str]) -> str:
    """The verb and the last two arguments that are not the config or the tiny model's options."""
    own = [a for a in args[1:] if a not in TINY and a not in ("--config", str(QUICKSTART))]
    return " ".join([args[0], *own[-2:]])[:80]


@pytest.mark.parametrize("args, expected", MISTAKES, ids=[_mistake_id(a) for a, _ in MISTAKES])
def test_mistakes_are_one_line_exit_2_and_write_nothing(args, expected, tmp_path, monkeypatch, capsys, request):
    """Nothing written includes the run directory: a run failing on its input leaves no logs/.../version_N."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIGHTNING_SUMM_TEST_UNSET", raising=False)
    _mistake_files(tmp_path)
    ckpt = request.getfixturevalue("tagged_model")["ckpt"] if "{ckpt}" in " ".join(args) else None
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_:
        main([a.format(tmp=tmp_path, ckpt=ckpt) for a in args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lightning_summ: error: "), err
    assert expected.format(tmp=tmp_path, ckpt=ckpt) in lines[0] and "Traceback" not in err, lines[0]
    assert sorted(tmp_path.rglob("*")) == before


def test_an_error_raised_while_the_run_starts_is_one_line(tmp_path, monkeypatch, capsys):
    """--data.fold 5 of 5 passes parsing and fails in the DataModule's setup: still one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(QUICKSTART), *TINY, "--data.fold", "5", "--data.num_folds", "5"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "lightning_summ: error: data.fold must be in [0, 4] with data.num_folds 5, got 5"
    assert "Traceback" not in err


def test_results_are_printed_by_rank_zero_only(tmp_path, monkeypatch, capsys):
    a = _candidates(tmp_path / "a.jsonl", [("x", "가 나"), ("y", "다 라")])
    args = ["ensemble", "--inputs", a, "--tokenizer", "whitespace", "--output", str(tmp_path / "o.csv")]
    monkeypatch.setattr(rank_zero_only, "rank", 1, raising=False)
    main(args)
    assert capsys.readouterr().out == "" and (tmp_path / "o.csv").is_file()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    main(args)
    assert f"Wrote 2 summaries to {tmp_path / 'o.csv'}" in capsys.readouterr().out


# Messages of Lightning/torch that no user action can remove (or that describe our own, tested, choices).
NOISE = ["💡 Tip: For seamless cloud logging", "isinstance(treespec, LeafSpec)", "The dirpath has changed",
         "args parameter is intended", "Be aware that when using `ckpt_path`", "custom batch sampler `SortedBatchSampler`"]


def test_fit_and_predict_print_no_warning_a_user_cannot_act_on(tmp_path, monkeypatch, capfd, caplog):
    monkeypatch.chdir(tmp_path)
    # The same callbacks in both runs: predict then restores ModelCheckpoint's state from another
    # directory, the case that warns "The dirpath has changed".
    common = ["--config", str(QUICKSTART), *TINY, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
              "--model.init_args.evaluation.generate_every_n_epochs=1",
              "--trainer.enable_progress_bar=false"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # pytest's own filters (setup.cfg) would hide some of them otherwise
        main(["fit", *common])
        fit_out, fit_err = capfd.readouterr()
        best = fit_out.split("Best checkpoint: ", 1)[1].split("\n", 1)[0]
        main(["predict", *common, "--ckpt_path", best])
        out, err = capfd.readouterr()
    # Lightning logs through the logging module (caplog), warns through warnings (caught) and prints.
    text = "\n".join([fit_out, fit_err, out, err, caplog.text, *(str(w.message) for w in caught)])
    assert [n for n in NOISE if n in text] == []
    assert "Wrote 40 summaries to " in out  # results stay visible



def test_predict_from_a_checkpoint_needs_no_training_file(tagged_model, tmp_path, monkeypatch):
    """The tags come from the checkpoint: the same summaries as with the training file, which before
    was needed only to rebuild them (without it the checkpoint's #Manager# was missing)."""
    monkeypatch.chdir(tmp_path)
    common = ["predict", "--config", str(QUICKSTART), *TINY, f"--ckpt_path={tagged_model['ckpt']}",
              "--trainer.enable_progress_bar=false"]
    main([*common, f"--data.train_path={tagged_model['train']}", f"--submission.output_path={tmp_path}/with.csv"])
    main([*common, "--data.train_path=null", f"--submission.output_path={tmp_path}/without.csv"])
    with_train, without = read_submission_rows(tmp_path / "with.csv"), read_submission_rows(tmp_path / "without.csv")
    assert len(without) == 40 and without == with_train


def test_serve_and_export_load_a_checkpoint_without_a_training_file(tagged_model, tmp_path, monkeypatch):
    """load_checkpoint (serve, export) takes the tags from the checkpoint too: the #Manager# row exists."""
    import torch

    from lightning_summ.models.base import load_checkpoint

    monkeypatch.chdir(tmp_path)
    cli = run_cli(["--config", str(QUICKSTART), *TINY, "--data.train_path=null"], run=False)
    load_checkpoint(cli.model, cli.datamodule, str(tagged_model["ckpt"]))
    assert "#Manager#" in cli.model.processor.tags
    saved = torch.load(tagged_model["ckpt"], weights_only=False)["state_dict"]
    for name, value in cli.model.state_dict().items():
        if name in saved:
            assert torch.equal(value, saved[name]), name


def test_fnames_with_spaces_come_back_exactly_in_the_submission(tagged_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fnames = [" lead", "trail ", " both ", "plain"]
    write_examples(tmp_path / "spaces.csv", [Example(f, "#Person1#: 안녕하세요.\n#Person2#: 네.") for f in fnames])
    main(["predict", "--config", str(QUICKSTART), *TINY, f"--ckpt_path={tagged_model['ckpt']}",
          f"--data.train_path={tagged_model['train']}", f"--data.predict_path={tmp_path}/spaces.csv",
          f"--submission.output_path={tmp_path}/out.csv", "--trainer.enable_progress_bar=false"])
    assert [fname for _, fname, _ in read_submission_rows(tmp_path / "out.csv")] == fnames
    candidates = (tmp_path / "candidates.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["fname"] for line in candidates] == fnames
