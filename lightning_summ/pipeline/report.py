"""``report.json`` and ``report.md``: members, scores with their tokenizer, ensemble against the best
member, timeline and failures, written atomically into the run directory."""

from __future__ import annotations

import json
from pathlib import Path

from lightning_summ.io import atomic_write


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _member_rows(members: list[dict]) -> list[str]:
    rows = ["| member | status | kind | params (trainable) | train s | samples/s | peak GB | scored on | R1 | R2 | RL | mean |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in members:
        r = m.get("result") or {}
        s, p = r.get("scores") or {}, r.get("parameters") or {}
        params = (f"{p['total']:,} ({p['trainable']:,})" if "total" in p
                  else f"{p['in_checkpoint']:,} in checkpoint" if p else "-")
        rows.append(f"| {m['name']} | {m['status']} | {r.get('kind', '-')} | {params} | {_fmt(r.get('train_seconds'), 1)} "
                    f"| {_fmt(r.get('samples_per_s'))} | {_fmt(r.get('peak_mem_gb'))} | {r.get('score_of', '-')} | "
                    + " | ".join(_fmt(s.get(k) * 100 if k != "rouge_mean" and s.get(k) is not None else s.get(k))
                                 for k in ("r1", "r2", "rl", "rouge_mean")) + " |")
    return rows


def markdown(report: dict) -> str:
    lines = [f"# Pipeline report: {report['config']}", "", f"Status: **{report['status']}**.", "",
             "## Members", "", *_member_rows(report["members"]), "",
             f"ROUGE ×100 with tokenizer `{report.get('rouge_tokenizer')}`; `scored on` says which rows "
             "(out-of-fold rows of the training file for k-fold members, the validation file for single fits).", ""]
    ens = report.get("ensemble")
    if ens:
        lines += ["## Ensemble", ""]
        if ens.get("status") == "done":
            res = ens["result"]
            lines.append(f"Method `{res['method']}` over {len(res['inputs'])} candidate files; chosen from: "
                         f"{json.dumps(res['chosen_from'], ensure_ascii=False)}.")
            if res.get("scores"):
                lines += ["", "| predictions on the references file | rouge_mean |", "|---|---|"]
                lines += [f"| {name} | {_fmt(v)} |" for name, v in res["scores"].items()]
        else:
            lines.append(f"{ens.get('status')}: {ens.get('error') or ''}")
        lines.append("")
    lines += ["## Timeline", "", "| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {t['stage']} | {t['status']} | {_fmt(t['seconds'], 1)} |" for t in report["timeline"]]
    failures = [m for m in report["members"] if m["status"] == "failed"]
    if ens and ens.get("status") == "failed":
        failures.append({"name": "ensemble", "error": ens["error"]})
    lines += ["", "## Failures", ""] + ([f"- **{f['name']}**: {f['error']}" for f in failures] or ["none"])
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path, report: dict) -> None:
    with atomic_write(run_dir / "report.json") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    with atomic_write(run_dir / "report.md") as f:
        f.write(markdown(report))
