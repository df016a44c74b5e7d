"""``lightning_summ pipeline`` on tiny members: k folds + a single fit + a failing member + a failing API
stage, MBR ensemble, report.md/json, resume (finished stages skipped, changed ones refused, a restarted
member redoes the stages that read it), soft voting equal to ``predict`` with ``ensemble_checkpoints``;
the YAML's mistakes are one line; the shipped pipeline configs name configs that exist."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import QUICKSTART, REPO, TINY
from lightning_summ.commands import main

FAST = [*TINY, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]


def write_spec(path, members, method="mbr", **extra):
    spec = {"output_dir": str(path.parent / "run"), "members": members, "ensemble": {"method": method},
            "references": "pkg://sample_data/test.csv", **extra}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


MEMBERS = [{"name": "folds", "config": str(QUICKSTART), "folds": 2, "overrides": FAST},
           {"name": "single", "config": str(QUICKSTART), "overrides": [*FAST, "--seed_everything=7"]},
           {"name": "broken", "config": str(QUICKSTART), "overrides": [*FAST, "--trainer.max_epochs=abc"]}]
NOT_AN_API = {"config": str(QUICKSTART), "rows": 5}  # a trained-model config: the API stage refuses it


def run_report(spec, *flags, code=None):
    """Run the pipeline; check its exit code (None: success); return report.json."""
    if code is None:
        main(["pipeline", "--config", str(spec), *flags])
    else:
        with pytest.raises(SystemExit) as exit_info:
            main(["pipeline", "--config", str(spec), *flags])
        assert exit_info.value.code == code
    return json.loads((spec.parent / "run" / "report.json").read_text())


def stages_of(report):
    return [(t["stage"], t["status"]) for t in report["timeline"]]


def refused(capsys, spec, *flags) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "--config", str(spec), *flags])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_pipeline_runs_members_ensembles_reports_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "pipeline.yaml", MEMBERS, api=NOT_AN_API)
    report = run_report(spec, code=1)  # the broken member and the API fail the run, the others finish
    run = tmp_path / "run"
    status = {m["name"]: m["status"] for m in report["members"]}
    assert status == {"folds": "done", "single": "done", "broken": "failed"}
    broken = next(m for m in report["members"] if m["name"] == "broken")
    assert "max_epochs" in broken["error"] and "\n" not in broken["error"]
    assert report["api"]["status"] == "failed" and "not a lightning_summ.api.ApiSummarizer" in report["api"]["error"]
    folds = next(m for m in report["members"] if m["name"] == "folds")["result"]
    assert folds["kind"] == "2-fold" and len(folds["candidates"]) == len(folds["checkpoints"]) == 2
    assert folds["score_of"] == "out-of-fold"
    single = next(m for m in report["members"] if m["name"] == "single")["result"]
    # the same architecture: its parameters (tied weights once) plus buffers such as BART's final_logits_bias
    assert single["parameters"]["total"] <= folds["parameters"]["in_checkpoint"] < 1.1 * single["parameters"]["total"]
    assert single["parameters"]["total"] == single["parameters"]["trainable"] > 0
    assert single["score_of"] == "validation" and 0 <= single["scores"]["rouge_mean"] <= 100
    ensemble = report["ensemble"]["result"]
    assert ensemble["method"] == "mbr" and len(ensemble["decodings"]) == 3
    assert sum(ensemble["chosen_from"].values()) == 40
    assert set(ensemble["scores"]) == {"folds", "single", "ensemble"}
    assert report["final"]["from"] == "ensemble" and not report["tta_applied"]
    assert (run / "submission.csv").read_text() == (run / "ensemble.csv").read_text()
    markdown = (run / "report.md").read_text()
    assert "| folds | done | 2-fold |" in markdown and "**broken**: " in markdown and "**api**: ConfigError" in markdown
    assert "Not applied (the pipeline YAML has no `tta`)" in markdown and "## Timeline" in markdown

    # rerun without the broken member and the API: finished stages are skipped, nothing is overwritten
    before = (run / "stages" / "member:folds.json").read_text()
    write_spec(spec, MEMBERS[:2])
    report = run_report(spec)
    assert (run / "stages" / "member:folds.json").read_text() == before
    # the ensemble reads the same finished members, so it is skipped too
    assert stages_of(report) == [("member:folds", "skipped (done)"), ("member:single", "skipped (done)"),
                                 ("ensemble", "skipped (done)")]

    # a finished member with changed settings is refused (one line, exit 2) unless restarted
    changed = [dict(MEMBERS[0], overrides=[*FAST, "--trainer.limit_train_batches=1"]), MEMBERS[1]]
    write_spec(spec, changed)
    err = refused(capsys, spec)
    assert err.startswith("lightning_summ: error: stage 'member:folds' finished with other settings")
    assert "--pipeline.restart member:folds" in err
    assert "no stage 'member:nope'" in refused(capsys, spec, "--pipeline.restart", "member:nope")

    # restarting a member redoes it afresh (its old folder removed: cv would resume old folds) and the
    # ensemble that reads it (its inputs changed), nothing else
    write_spec(spec, MEMBERS[:2])
    for name in ("folds", "single"):
        (run / "members" / name / "old-run-marker").write_text("x")
    report = run_report(spec, "--pipeline.restart", "member:single")
    assert stages_of(report) == [("member:folds", "skipped (done)"), ("member:single", "done"), ("ensemble", "done")]
    assert (run / "stages" / "member:folds.json").read_text() == before
    assert (run / "members" / "folds" / "old-run-marker").is_file()
    assert not (run / "members" / "single" / "old-run-marker").exists()


def test_soft_voting_weighted_and_none_ensembles(tmp_path, monkeypatch, capsys):
    from lightning_summ.commands.lightning import run_cli

    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "pipeline.yaml", MEMBERS[:1])
    run_report(spec)
    write_spec(spec, MEMBERS[:1], method="soft_voting")  # a finished ensemble with another method is refused
    assert "stage 'ensemble' finished with other settings" in refused(capsys, spec)
    report = run_report(spec, "--pipeline.restart", "ensemble")
    result = report["ensemble"]["result"]
    (decoding,) = result["decodings"]
    ckpts = report["members"][0]["result"]["checkpoints"]
    assert decoding["checkpoint"] == ckpts[0] and decoding["soft_voting_with"] == ckpts[1:] and len(ckpts) == 2
    direct = tmp_path / "direct.csv"
    run_cli(["predict", "--config", str(QUICKSTART), *FAST, f"--ckpt_path={ckpts[0]}",
             f"--model.init_args.ensemble_checkpoints={json.dumps(ckpts[1:])}", f"--submission.output_path={direct}"])
    assert (tmp_path / "run" / "ensemble.csv").read_text() == direct.read_text()
    assert "(soft voting with 1 more checkpoints)" in (tmp_path / "run" / "report.md").read_text()

    # weighted: every checkpoint votes with its member's own score; none: the best member's first checkpoint
    from lightning_summ.io import read_submission

    write_spec(spec, MEMBERS[:1], method="weighted")
    report = run_report(spec, "--pipeline.restart", "ensemble")
    own = report["members"][0]["result"]["scores"]["rouge_mean"]
    assert [d["weight"] for d in report["ensemble"]["result"]["decodings"]] == [own, own]
    assert sum(report["ensemble"]["result"]["chosen_from"].values()) == 40
    write_spec(spec, MEMBERS[:1], method="none")
    report = run_report(spec, "--pipeline.restart", "ensemble")
    first = report["members"][0]["result"]["submissions"][0]
    assert read_submission(tmp_path / "run" / "ensemble.csv") == read_submission(first)
    assert report["ensemble"]["result"]["chosen_from"] == {"folds/0": 40}


@pytest.mark.parametrize("text, message", [
    ("members: []\noutput_dir: x\n", "members: expected a non-empty list"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml, folds: 1}]\n", "members[0].folds: expected null"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml}]\nensemble: {method: vote}\n", "ensemble.method"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml}, {name: a, config: d.yaml}]\n", "'a' is used twice"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml}]\napi: {config: s.yaml, rows: 0}\n",
     "api.rows: expected an integer >= 1"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml}]\napi: {rows: 3}\n", "api.config: expected a config path"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml}]\ntta: {augmenters: [shout]}\n", "tta.augmenters"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml}]\ntta: {num_aug: 0}\n", "tta.num_aug"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml}]\nplots: yes\n", "unknown key 'plots'"),
])
def test_bad_pipeline_yaml_is_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message in err and str(path) in err and len(err.splitlines()) == 1


def test_tta_true_means_the_callbacks_defaults_and_false_means_off(tmp_path):
    from lightning_summ.callbacks.tta import TestTimeAugmentation
    from lightning_summ.pipeline.spec import load_spec

    base = "output_dir: x\nmembers: [{name: a, config: c.yaml}]\n"
    (tmp_path / "on.yaml").write_text(base + "tta: true\n")
    (tmp_path / "off.yaml").write_text(base + "tta: false\n")
    defaults = TestTimeAugmentation()
    assert load_spec(tmp_path / "on.yaml")["tta"] == {"num_aug": defaults.num_aug, "augmenters": defaults.names}
    assert load_spec(tmp_path / "off.yaml")["tta"] is None


@pytest.mark.parametrize("name", ["pipeline-quickstart.yaml", "pipeline-competition.yaml"])
def test_shipped_pipeline_configs_parse_and_name_existing_configs(name):
    from lightning_summ.pipeline.spec import load_spec

    spec = load_spec(REPO / "configs" / name)
    configs = [m["config"] for m in spec["members"]] + ([spec["api"]["config"]] if spec["api"] else [])
    assert configs and all((REPO / c).is_file() for c in configs), configs
    if name == "pipeline-competition.yaml":  # the original team's six-model plan, the API, an ensemble, TTA
        assert [m["config"] for m in spec["members"]] == [
            "configs/kobart.yaml", "configs/qwen3-4b-qlora.yaml", "configs/llama-3.2-korean-bllossom-3b-qlora.yaml",
            "configs/polyglot-ko-12.8b-qlora.yaml", "configs/kullm-v2-12.8b-qlora.yaml",
            "configs/solar-10.7b-qlora.yaml"]
        assert spec["members"][0]["folds"] == 2 and spec["api"]["config"] == "configs/solar-api.yaml"
        assert spec["ensemble"]["method"] != "none" and spec["tta"]
