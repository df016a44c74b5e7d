"""``lightning_summ pipeline`` end to end on tiny members: k folds + a single fit + a failing member,
MBR ensemble, report.md/json, resume (finished stages skipped, changed ones refused, restart)."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import QUICKSTART, REPO, TINY
from lightning_summ.commands import main

FAST = [*TINY, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]


def write_spec(path, members, method="mbr"):
    spec = {"output_dir": str(path.parent / "run"), "members": members, "ensemble": {"method": method},
            "references": "pkg://sample_data/test.csv"}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


MEMBERS = [{"name": "folds", "config": str(QUICKSTART), "folds": 2, "overrides": FAST},
           {"name": "single", "config": str(QUICKSTART), "overrides": [*FAST, "--seed_everything=7"]},
           {"name": "broken", "config": str(QUICKSTART), "overrides": [*FAST, "--trainer.max_epochs=abc"]}]


def test_pipeline_runs_members_ensembles_reports_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "pipeline.yaml", MEMBERS)
    with pytest.raises(SystemExit) as exit_info:  # the broken member fails the run, the others finish
        main(["pipeline", "--config", str(spec)])
    assert exit_info.value.code == 1
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    status = {m["name"]: m["status"] for m in report["members"]}
    assert status == {"folds": "done", "single": "done", "broken": "failed"}
    broken = next(m for m in report["members"] if m["name"] == "broken")
    assert "max_epochs" in broken["error"] and "\n" not in broken["error"]
    folds = next(m for m in report["members"] if m["name"] == "folds")["result"]
    assert folds["kind"] == "2-fold" and len(folds["candidates"]) == 2 and folds["score_of"] == "out-of-fold"
    single_params = next(m for m in report["members"] if m["name"] == "single")["result"]["parameters"]
    # the same architecture: its parameters (tied weights once) plus buffers such as BART's final_logits_bias
    assert single_params["total"] <= folds["parameters"]["in_checkpoint"] < 1.1 * single_params["total"]
    single = next(m for m in report["members"] if m["name"] == "single")["result"]
    assert single["parameters"]["total"] == single["parameters"]["trainable"] > 0
    assert single["score_of"] == "validation" and 0 <= single["scores"]["rouge_mean"] <= 100
    ensemble = report["ensemble"]["result"]
    assert ensemble["method"] == "mbr" and len(ensemble["inputs"]) == 3 and sum(ensemble["chosen_from"].values()) == 40
    assert set(ensemble["scores"]) == {"folds", "single", "ensemble"}
    markdown = (run / "report.md").read_text()
    assert "| folds | done | 2-fold |" in markdown and "| out-of-fold | 0.00 |" in markdown and "**broken**: " in markdown and "## Timeline" in markdown

    # rerun without the broken member: finished stages are skipped, nothing is overwritten
    before = (run / "stages" / "member:folds.json").read_text()
    write_spec(spec, MEMBERS[:2])
    main(["pipeline", "--config", str(spec)])
    assert (run / "stages" / "member:folds.json").read_text() == before
    timeline = json.loads((run / "report.json").read_text())["timeline"]
    # the ensemble's inputs (the finished members) are the same, so it is skipped too
    assert [(t["stage"], t["status"]) for t in timeline] == [
        ("member:folds", "skipped (done)"), ("member:single", "skipped (done)"), ("ensemble", "skipped (done)")]

    # a finished member with changed settings is refused (one line, exit 2) unless restarted
    changed = [dict(MEMBERS[0], overrides=[*FAST, "--trainer.limit_train_batches=1"]), MEMBERS[1]]
    write_spec(spec, changed)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "--config", str(spec)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightning_summ: error: stage 'member:folds' finished with other settings")
    assert "--pipeline.restart member:folds" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("text, message", [
    ("members: []\noutput_dir: x\n", "members: expected a non-empty list"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml, folds: 1}]\n", "members[0].folds: expected null"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml}]\nensemble: {method: vote}\n", "ensemble.method"),
    ("output_dir: x\nmembers: [{name: a, config: c.yaml}, {name: a, config: d.yaml}]\n", "'a' is used twice"),
])
def test_bad_pipeline_yaml_is_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        main(["pipeline", "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message in err and str(path) in err and len(err.splitlines()) == 1


def test_shipped_pipeline_configs_parse():
    from lightning_summ.pipeline.spec import load_spec

    for name in ("pipeline-quickstart.yaml",):
        spec = load_spec(REPO / "configs" / name)
        assert all((REPO / m["config"]).is_file() for m in spec["members"])
