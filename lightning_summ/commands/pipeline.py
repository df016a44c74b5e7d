"""``lightning_summ pipeline``: the whole workflow in one command, with a report.

    lightning_summ pipeline --config configs/pipeline-quickstart.yaml [--pipeline.restart STAGE]

Runs every member of the pipeline YAML (one fit, or k folds through ``cv``), then the ensemble
(``mbr`` or ``weighted`` over the members' candidates of the predict file, or ``none``), and writes
``report.json`` and ``report.md`` into ``output_dir``. A failing member is recorded with its one-line
cause and the others continue; the exit code is 1 when anything failed. Rerunning skips finished
stages (``member:<name>``, ``ensemble``); a finished stage whose settings changed is refused unless
``--pipeline.restart <stage>`` redoes it. See ``lightning_summ/pipeline/spec.py`` for the YAML.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from lightning_summ.commands._args import verb_parser
from lightning_summ.console import say
from lightning_summ.io import write_submission
from lightning_summ.paths import resolve_path
from lightning_summ.pipeline.report import write_report
from lightning_summ.pipeline.spec import load_spec
from lightning_summ.pipeline.stages import Stages


def pipeline_options(config: str, restart: Optional[str] = None) -> dict:
    """Options of ``pipeline``.

    Args:
        config: the pipeline YAML (members, ensemble, references, output_dir).
        restart: a finished stage to redo (``member:<name>`` or ``ensemble``).
    """
    return {"config": config, "restart": restart}


def ensemble_stage(spec: dict, members: list[dict], run_dir: Path) -> dict:
    from lightning_summ.commands.ensemble import combine
    from lightning_summ.io import read_candidates

    done = [m for m in members if m["status"] == "done"]
    if not done:
        raise RuntimeError("no member finished")
    inputs = [(m, path) for m in done for path in m["result"]["candidates"]]
    tokenizer = done[0]["result"]["rouge_tokenizer"]
    weights = [m["result"]["scores"]["rouge_mean"] if spec["ensemble"]["method"] == "weighted" else 1.0
               for m, _ in inputs]
    chosen = combine([read_candidates(p) for _, p in inputs], [p for _, p in inputs], spec["ensemble"]["method"],
                     weights, tokenizer)
    out = run_dir / "ensemble.csv"
    write_submission(out, ((c["fname"], c["summary"]) for c in chosen))
    chosen_from: dict[str, int] = {}
    for c in chosen:
        chosen_from[c["member"]] = chosen_from.get(c["member"], 0) + 1
    return {"method": spec["ensemble"]["method"], "inputs": [p for _, p in inputs], "output": str(out),
            "chosen_from": chosen_from, "scores": score_on_references(spec, done, out, tokenizer)}


def score_on_references(spec: dict, done: list[dict], ensemble_csv: Path, tokenizer: str) -> Optional[dict]:
    """rouge_mean on the references file of each member's first submission and of the ensemble."""
    if not spec["references"]:
        return None
    from lightning_summ.metrics.rouge import rouge_from_files

    refs = resolve_path(spec["references"])
    files = {m["name"]: m["result"]["submissions"][0] for m in done} | {"ensemble": str(ensemble_csv)}
    return {name: rouge_from_files(path, refs, tokenizer=tokenizer)["rouge_mean"] for name, path in files.items()}


def run_pipeline(spec: dict, config: str, restart: Optional[str]) -> dict:
    from lightning_summ.commands._pipeline_members import run_member

    run_dir = Path(spec["output_dir"])
    stages = Stages(run_dir, restart)
    for member in spec["members"]:  # refuse a changed finished stage before running anything
        stages.check(f"member:{member['name']}", member)
    members = []
    for member in spec["members"]:
        name = member["name"]
        record = stages.run(f"member:{name}", member, lambda m=member: run_member(m, run_dir / "members" / m["name"]))
        members.append({"name": name, **{k: record[k] for k in ("status", "result", "error")}})
    ensemble = None
    if spec["ensemble"]["method"] != "none":
        settings = {"ensemble": spec["ensemble"], "references": spec["references"],
                    "members": [m["name"] for m in members if m["status"] == "done"]}
        ensemble = stages.run("ensemble", settings, lambda: ensemble_stage(spec, members, run_dir))
    failed = any(m["status"] == "failed" for m in members) or bool(ensemble and ensemble["status"] == "failed")
    done = [m for m in members if m["status"] == "done"]
    report = {"config": config, "status": "failed" if failed else "ok", "members": members, "ensemble": ensemble,
              "rouge_tokenizer": done[0]["result"]["rouge_tokenizer"] if done else None,
              "timeline": stages.timeline}
    write_report(run_dir, report)
    say(f"pipeline: {report['status']}; report: {run_dir / 'report.md'}")
    return report


def main(args: list[str]) -> dict:
    parser = verb_parser("pipeline", __doc__)
    parser.add_argument("--config", type=str, required=True, help="the pipeline YAML")
    parser.add_argument("--pipeline.restart", type=Optional[str], default=None,
                        help="a finished stage to redo: member:<name> or ensemble")
    options = parser.parse_args(args)
    spec = load_spec(options.config)
    report = run_pipeline(spec, options.config, options.pipeline.restart)
    if report["status"] != "ok":
        sys.exit(1)
    return report
