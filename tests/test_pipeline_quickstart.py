"""The shipped ``configs/pipeline-quickstart.yaml`` end to end, as shipped (output under tmp_path), plus
an API baseline served by a real ``lightning_summ serve`` process on loopback: report.md links PNGs that
exist, report.json has every stage, and every number of the report equals the one recomputed from the
files the pipeline wrote; TensorBoard holds the same numbers as hparams, one run per member."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from conftest import CONFIGS, QUICKSTART, TINY
from lightning_summ.commands import pipeline
from lightning_summ.io import read_submission
from lightning_summ.paths import resolve_path
from lightning_summ.pipeline.report import score_cells
from lightning_summ.pipeline.scores import mean_scores, score_file
from test_readme import README, readme_commands

KEY_ENV, KEY = "LS_PIPELINE_TEST_KEY", "sk-pipeline-test-key"


@contextlib.contextmanager
def lightning_summ_serve(ckpt: str, cwd):
    """``lightning_summ serve`` of the tiny checkpoint in its own process on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, KEY_ENV: KEY, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lightning_summ", "serve", "--config", str(QUICKSTART), *TINY,
                             "--model.init_args.generation.min_new_tokens=4",  # an answer, not an empty string
                             f"--ckpt_path={ckpt}", f"--serve.port={port}", f"--serve.api_key_env={KEY_ENV}"],
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        proc.terminate()
        proc.wait(30)


def wait_until_serving(url: str, proc, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"lightning_summ serve exited: {proc.stderr.read()[-2000:]}"
        try:
            request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"})
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail("lightning_summ serve did not answer in time")


def shipped_spec_with_api(tmp_path, url: str):
    """The shipped YAML with its output in tmp_path, absolute config paths, and an API stage."""
    spec = yaml.safe_load((CONFIGS / "pipeline-quickstart.yaml").read_text(encoding="utf-8"))
    spec["output_dir"] = str(tmp_path / "run")
    for member in spec["members"]:
        member["config"] = str(CONFIGS.parent / member["config"])
    val_path = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))["data"]["val_path"]
    spec["api"] = {"config": str(CONFIGS / "solar-api.yaml"), "rows": 12, "overrides": [
        f"--model.init_args.base_url={url}", "--model.init_args.model=lightning_summ",
        f"--model.init_args.api_key_env={KEY_ENV}", "--model.init_args.system_prompt=null",
        "--model.init_args.user_template={dialogue}", "--model.init_args.few_shot=0",
        f"--data.val_path={val_path}", f"--data.train_path={val_path}"]}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def check_numbers(report: dict, markdown: str, run) -> None:
    """Every score in report.json recomputed from the files it names, and shown as such in report.md."""
    tok, multi, refs = report["rouge_tokenizer"], report["multi_ref"], report["references"]
    ens = report["ensemble"]["result"]
    members = {m["name"]: m for m in report["members"]}
    expected = {name: mean_scores([score_file(p, refs, tok, multi) for p in m["result"]["submissions"]])
                for name, m in members.items()} | {"ensemble": score_file(ens["output"], refs, tok, multi)}
    assert ens["scores"] == expected
    tta = report["tta"]["result"]
    assert tta["scores"] == {"without TTA": expected["ensemble"],
                             "with TTA": score_file(tta["output"], refs, tok, multi)}
    api = report["api"]["result"]
    assert api["scores"] == score_file(api["submission"], api["rows_file"], tok, multi) and api["scores"]["n"] == 12
    for name, scores in api["members"].items():
        recomputed = mean_scores([score_file(p, api["rows_file"], tok, multi) for p in scores["submissions"]])
        assert {k: v for k, v in scores.items() if k != "submissions"} == recomputed, name
    shown = [("ensemble", expected["ensemble"]), ("with TTA", tta["scores"]["with TTA"]),
             (f"API ({api['model']})", api["scores"])] + [(n, api["members"][n]) for n in members]
    for name, scores in shown + list(expected.items()):
        assert f"| {name} | {score_cells(scores)}" in markdown, name
    for name, m in members.items():  # the members' own scores: the files their stages wrote
        assert f"| {m['result']['score_of']} | {score_cells(m['result']['scores'])}" in markdown
    before, after = read_submission(run / "ensemble.csv"), read_submission(run / "tta.csv")
    assert before.keys() == after.keys() and tta["changed_rows"] == sum(before[f] != after[f] for f in before)
    assert f"**{tta['changed_rows']}** rows" in markdown


def check_tensorboard(report: dict, run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for m in report["members"]:
        events = EventAccumulator(str(run / "tensorboard" / m["name"]))
        events.Reload()
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
        scalars = {tag: events.Scalars(tag)[0].value for tag in events.Tags()["scalars"]}
        want = {f"own/{k}": m["result"]["scores"][k] for k in ("r1", "r2", "rl", "rouge_mean")}
        want |= {f"api_rows/{k}": report["api"]["result"]["members"][m["name"]][k] for k in ("r1", "rouge_mean")}
        assert all(scalars[tag] == pytest.approx(value, rel=1e-6) for tag, value in want.items()), scalars


def readme_pipeline_commands(spec) -> list[list[str]]:
    """The README's ``lightning_summ pipeline`` commands, on the test's copy of the shipped YAML."""
    commands = [c[2:] for c in readme_commands(README.read_text(encoding="utf-8"))
                if c[:2] == ["lightning_summ", "pipeline"]]
    assert commands and all(c[:2] == ["--config", "configs/pipeline-quickstart.yaml"] for c in commands), commands
    return [["--config", str(spec), *c[2:]] for c in commands]


def test_shipped_quickstart_pipeline_with_a_served_api_baseline(tmp_path, monkeypatch):
    from lightning_summ.commands.lightning import run_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(KEY_ENV, KEY)
    cli = run_cli(["fit", "--config", str(QUICKSTART), *TINY, "--trainer.max_epochs=1",
                   "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"])
    ckpt = str(tmp_path / "served.ckpt")
    cli.trainer.save_checkpoint(ckpt)
    with lightning_summ_serve(ckpt, tmp_path) as (url, proc):
        spec = shipped_spec_with_api(tmp_path, url)
        first, *later = readme_pipeline_commands(spec)  # the README's commands: run, then a restart
        wait_until_serving(url, proc)
        report = pipeline.main(first)
    run = tmp_path / "run"
    assert report["status"] == "ok" and report == json.loads((run / "report.json").read_text())
    assert [(t["stage"], t["status"]) for t in report["timeline"]] == [
        ("member:bart-2fold", "done"), ("member:bart-single", "done"), ("api", "done"), ("ensemble", "done"),
        ("tta", "done")]
    assert report["ensemble"]["result"]["method"] == "mbr" and report["tta_applied"] is True
    # `references: predict_path` scored the file the members predicted: the quickstart's data.predict_path
    predict_path = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))["data"]["predict_path"]
    assert report["references"] == resolve_path(predict_path)
    usage = report["api"]["result"]["usage"]
    assert usage["requests"] == 12 and usage["completion_tokens"] > 0  # answered by the server, not a cache
    assert all(read_submission(report["api"]["result"]["submission"]).values())
    assert (run / "submission.csv").read_text() == (run / "tta.csv").read_text()
    markdown = (run / "report.md").read_text()
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
    assert sorted(links) == ["plots/scores.png", "plots/timeline.png"]
    assert all((run / link).read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for link in links)
    assert "Applied: **yes**" in markdown and "## API baseline" in markdown
    check_numbers(report, markdown, run)
    check_tensorboard(report, run)

    submission = (run / "submission.csv").read_text()
    assert later == [[*first, "--pipeline.restart", "tta"]]
    report = pipeline.main(later[0])  # redoes TTA alone (seeded: the same file), skips the rest
    assert [t["status"] for t in report["timeline"]] == ["skipped (done)"] * 4 + ["done"]
    assert (run / "submission.csv").read_text() == submission
