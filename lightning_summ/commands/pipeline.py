"""``lightning_summ pipeline``: the whole workflow in one command, with a report.

    lightning_summ pipeline --config configs/pipeline-quickstart.yaml [--pipeline.restart STAGE]

Runs every member of the pipeline YAML (one fit, or k folds through ``cv``), the optional API
baseline on a sample of validation rows (and every member on the same rows), the ensemble (``mbr``,
``weighted``, ``soft_voting`` or ``none``) of the members' predictions of the predict file, and
optionally the same decodings with test-time augmentation; the final ``submission.csv`` is the TTA
file when TTA is on, else the ensemble's. Writes ``report.md`` (tables, linked PNG charts),
``report.json`` and TensorBoard hparams (one run per member) into ``output_dir``. A failing stage is
recorded with its one-line cause and the others continue; the exit code is 1 when anything failed.
Rerunning skips finished stages (``member:<name>``, ``api``, ``ensemble``, ``tta``); a finished stage
whose settings changed is refused unless ``--pipeline.restart <stage>`` redoes it, and the stages that
read a redone stage are redone with it. See ``lightning_summ/pipeline/spec.py`` for the YAML.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from lightning_summ.commands._args import verb_parser
from lightning_summ.console import say
from lightning_summ.errors import ConfigError
from lightning_summ.io import read_submission, write_submission
from lightning_summ.pipeline.report import write_report
from lightning_summ.pipeline.scores import mean_scores, score_file
from lightning_summ.pipeline.spec import load_spec
from lightning_summ.pipeline.stages import Stages


def stage_settings(spec: dict) -> dict:
    """Each stage's settings, as the YAML states them (known before anything runs, so a changed one
    is refused up front)."""
    settings = {f"member:{m['name']}": m for m in spec["members"]}
    if spec["api"]:
        settings["api"] = spec["api"]
    settings["ensemble"] = {"ensemble": spec["ensemble"], "references": spec["references"]}
    if spec["tta"]:
        settings["tta"] = {"tta": spec["tta"], "ensemble": spec["ensemble"], "references": spec["references"]}
    return settings


def reference_scores(spec: dict, done: list[dict], ensemble_csv: Path, tokenizer: str, multi_ref: str):
    """Each member (mean over its checkpoints' predictions) and the ensemble on the references file."""
    if not spec["references"]:
        return None
    refs = spec["references"]
    scores = {m["name"]: mean_scores([score_file(p, refs, tokenizer, multi_ref) for p in m["result"]["submissions"]])
              for m in done}
    return scores | {"ensemble": score_file(ensemble_csv, refs, tokenizer, multi_ref)}


def ensemble_work(spec, done, run_dir, tokenizer, multi_ref) -> dict:
    from lightning_summ.commands._pipeline_final import final_stage

    result = final_stage(spec, done, run_dir, tokenizer, with_tta=False)
    result["scores"] = reference_scores(spec, done, Path(result["output"]), tokenizer, multi_ref)
    return result


def tta_work(spec, done, run_dir, tokenizer, multi_ref, ensemble: dict) -> dict:
    from lightning_summ.commands._pipeline_final import final_stage

    if ensemble["status"] != "done":  # TTA's effect is measured against the ensemble's file of this run
        raise RuntimeError("the ensemble stage did not finish, and TTA is compared with its file")
    result = final_stage(spec, done, run_dir, tokenizer, with_tta=True)
    if spec["references"]:
        refs = spec["references"]
        result["scores"] = {"without TTA": score_file(run_dir / "ensemble.csv", refs, tokenizer, multi_ref),
                            "with TTA": score_file(result["output"], refs, tokenizer, multi_ref)}
    return result


def final_submission(run_dir: Path, ensemble: dict, tta: Optional[dict]) -> Optional[dict]:
    """``submission.csv``: the TTA file when TTA ran, else the ensemble's."""
    source = tta if tta and tta["status"] == "done" else ensemble if ensemble["status"] == "done" else None
    if source is None:
        return None
    out = run_dir / "submission.csv"
    write_submission(out, read_submission(source["result"]["output"]).items())
    return {"file": str(out), "from": source["stage"], "tta_applied": source["stage"] == "tta"}


def run_pipeline(spec: dict, config: str, restart: Optional[str]) -> dict:
    from lightning_summ.commands._pipeline_api import api_stage
    from lightning_summ.commands._pipeline_members import run_member

    run_dir = Path(spec["output_dir"])
    settings = stage_settings(spec)
    if restart is not None and restart not in settings:
        raise ConfigError(f"--pipeline.restart: no stage '{restart}' in {config} (stages: {', '.join(settings)})")
    stages = Stages(run_dir, restart)
    for name, value in settings.items():  # refuse a changed finished stage before running anything
        stages.check(name, value)
    records = {}
    for member in spec["members"]:
        name = f"member:{member['name']}"
        member_dir = run_dir / "members" / member["name"]
        records[name] = stages.run(name, settings[name], lambda m=member, d=member_dir: run_member(m, d),
                                   outputs=member_dir)
    members = [{**m, **{k: records[f"member:{m['name']}"][k] for k in ("status", "result", "error")}}
               for m in spec["members"]]
    done = [m for m in members if m["status"] == "done"]
    inputs = [records[f"member:{m['name']}"] for m in done]
    tokenizer = done[0]["result"]["rouge_tokenizer"] if done else "morpheme"
    multi_ref = done[0]["result"]["multi_ref"] if done else "mean"
    if spec["references"] == "predict_path":  # the file the members predicted (the stage settings keep the word)
        spec = {**spec, "references": done[0]["result"].get("predict_path") if done else None}
    common = (spec, done, run_dir, tokenizer, multi_ref)
    if spec["api"]:
        records["api"] = stages.run("api", settings["api"], lambda: api_stage(*common), inputs)
    records["ensemble"] = stages.run("ensemble", settings["ensemble"], lambda: ensemble_work(*common), inputs)
    if spec["tta"]:
        ensemble = records["ensemble"]
        records["tta"] = stages.run("tta", settings["tta"], lambda: tta_work(*common, ensemble), [*inputs, ensemble])
    failed = any(r["status"] == "failed" for r in records.values())
    report = {"config": config, "status": "failed" if failed else "ok", "members": members,
              "api": records.get("api"), "ensemble": records["ensemble"], "tta": records.get("tta"),
              "final": final_submission(run_dir, records["ensemble"], records.get("tta")),
              "tta_applied": bool(records.get("tta") and records["tta"]["status"] == "done"),
              "rouge_tokenizer": tokenizer, "multi_ref": multi_ref, "references": spec["references"],
              "timeline": stages.timeline}
    write_report(run_dir, report)
    say(f"pipeline: {report['status']}; report: {run_dir / 'report.md'}")
    return report


def main(args: list[str]) -> dict:
    parser = verb_parser("pipeline", __doc__)
    parser.add_argument("--config", type=str, required=True, help="the pipeline YAML")
    parser.add_argument("--pipeline.restart", type=Optional[str], default=None,
                        help="a finished stage to redo: member:<name>, api, ensemble or tta")
    options = parser.parse_args(args)
    spec = load_spec(options.config)
    report = run_pipeline(spec, options.config, options.pipeline.restart)
    if report["status"] != "ok":
        sys.exit(1)
    return report
