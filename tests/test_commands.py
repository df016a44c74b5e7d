"""The command line as a user meets it: one fast help page with every verb, typed options, one line
and exit 2 for every mistake, output printed once (rank zero), no warnings nobody can act on."""

from __future__ import annotations

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
from lightning_summ.io import write_candidates

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
]


@pytest.mark.parametrize("args, expected", MISTAKES, ids=[" ".join(a[:1] + a[-2:])[:60] for a, _ in MISTAKES])
def test_mistakes_are_one_line_exit_2_and_write_nothing(args, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIGHTNING_SUMM_TEST_UNSET", raising=False)
    _candidates(tmp_path / "a.jsonl", [("x", "요약")])
    (tmp_path / "garbage.ckpt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_:
        main([a.format(tmp=tmp_path) for a in args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lightning_summ: error: "), err
    assert expected.format(tmp=tmp_path) in lines[0] and "Traceback" not in err
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

