"""``report.json`` and ``report.md``: members, scores with their tokenizer, the API baseline against the
members on its rows, the ensemble against every member, TTA's effect, the timeline and failures, with
the PNG charts (``plots.py``) linked and the same numbers as TensorBoard hparams (``tensorboard.py``);
every file is written atomically into the run directory."""

from __future__ import annotations

import json
from pathlib import Path

from lightning_summ.outputs import atomic_write

SCORE_HEADER = "| R1 | R2 | RL | mean |"


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def score_cells(scores: dict | None) -> str:
    """R1/R2/RL (F1, shown x100) and rouge_mean (already x100) as table cells."""
    s = scores or {}
    return " | ".join(_fmt(s[k] * 100 if k != "rouge_mean" else s[k]) if s.get(k) is not None else "-"
                      for k in ("r1", "r2", "rl", "rouge_mean")) + " |"


def _member_rows(members: list[dict]) -> list[str]:
    rows = ["| member | status | kind | params (trainable) | train s | samples/s | peak GB | scored on " + SCORE_HEADER,
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in members:
        r = m.get("result") or {}
        p = r.get("parameters") or {}
        params = (f"{p['total']:,} ({p['trainable']:,})" if "total" in p
                  else f"{p['in_checkpoint']:,} in checkpoint" if p else "-")
        cells = [m["name"], m["status"], r.get("kind", "-"), params, _fmt(r.get("train_seconds"), 1),
                 _fmt(r.get("samples_per_s")), _fmt(r.get("peak_mem_gb")), r.get("score_of", "-")]
        rows.append("| " + " | ".join(cells) + " | " + score_cells(r.get("scores")))
    return rows


def _failed(record: dict | None) -> list[str]:
    return [] if not record or record["status"] == "done" else [f"{record['status']}: {record.get('error') or ''}", ""]


def _api_section(api: dict | None) -> list[str]:
    if not api:
        return []
    lines = ["## API baseline", "", *_failed(api)]
    if api["status"] == "done":
        r = api["result"]
        lines += [f"`{r['model']}` at {r['base_url']} (config `{r['config']}`) on {r['rows']} rows sampled from "
                  f"`{r['val_path']}` (`{r['rows_file']}`); usage: {json.dumps(r['usage'])}. Every member predicted "
                  "the same rows (mean over its checkpoints).", "",
                  "| predictions of the API rows " + SCORE_HEADER, "|---|---|---|---|---|",
                  f"| API ({r['model']}) | " + score_cells(r["scores"])]
        lines += [f"| {name} | " + score_cells(s) for name, s in r["members"].items()]
        lines.append("")
    return lines


def _ensemble_section(ens: dict, references: str | None) -> list[str]:
    lines = ["## Ensemble", "", *_failed(ens)]
    if ens["status"] != "done":
        return lines
    res = ens["result"]
    lines.append(f"Method `{res['method']}` over {len(res['decodings'])} decoding(s): "
                 + ", ".join(f"`{d['label']}`" + (f" (soft voting with {len(d['soft_voting_with'])} more checkpoints)"
                                                  if d["soft_voting_with"] else "") for d in res["decodings"])
                 + f"; rows chosen from: {json.dumps(res['chosen_from'], ensure_ascii=False)}.")
    if res.get("scores"):
        scores = res["scores"]
        best = max((n for n in scores if n != "ensemble"), key=lambda n: scores[n]["rouge_mean"])
        lines += ["", f"On the references `{references}` (members: mean over their checkpoints' predictions); the "
                  f"ensemble against the best single member ({best}): "
                  f"{scores['ensemble']['rouge_mean'] - scores[best]['rouge_mean']:+.2f} rouge_mean.", "",
                  "| predictions of the predict file " + SCORE_HEADER, "|---|---|---|---|---|"]
        lines += [f"| {name} | " + score_cells(s) for name, s in scores.items()]
    return lines + [""]


def _tta_section(report: dict) -> list[str]:
    tta = report.get("tta")
    if not tta:
        return ["## Test-time augmentation", "", "Not applied (the pipeline YAML has no `tta`).", ""]
    lines = ["## Test-time augmentation", "", f"Applied: **{'yes' if report['tta_applied'] else 'no'}**.", "",
             *_failed(tta)]
    if tta["status"] == "done":
        res = tta["result"]
        stats = [d.get("tta_stats", {}) for d in res["decodings"]]
        rows, picked = sum(s.get("rows", 0) for s in stats), sum(s.get("picked_augmented", 0) for s in stats)
        lines += [f"{res['tta']['num_aug']} augmented view(s) per dialogue ({', '.join(res['tta']['augmenters'])}) for "
                  f"each of the {len(res['decodings'])} decoding(s); MBR over the views kept an augmented view's "
                  f"summary in {picked} of {rows} decoded rows; the final submission differs from the one without "
                  f"TTA in **{res['changed_rows']}** rows."]
        if res.get("scores"):
            lines += ["", f"On the references `{report['references']}`:", "",
                      "| final predictions " + SCORE_HEADER, "|---|---|---|---|---|"]
            lines += [f"| {name} | " + score_cells(s) for name, s in res["scores"].items()]
        lines.append("")
    return lines


def markdown(report: dict, plots: list[tuple[str, str]]) -> str:
    final = report.get("final")
    final_text = (f"`{final['file']}` (from the {final['from']} stage; TTA applied: "
                  f"{'yes' if final['tta_applied'] else 'no'})." if final else "none (no ensemble was written).")
    lines = [f"# Pipeline report: {report['config']}", "", f"Status: **{report['status']}**. Final submission: "
             + final_text, "",
             "## Members", "", *_member_rows(report["members"]), "",
             f"ROUGE ×100 with tokenizer `{report.get('rouge_tokenizer')}` "
             f"(multi-reference `{report.get('multi_ref')}`); "
             "`scored on` says which rows (out-of-fold rows of the training file for k-fold members, the validation "
             "file for single fits).", ""]
    lines += _api_section(report.get("api")) + _ensemble_section(report["ensemble"], report.get("references"))
    lines += _tta_section(report)
    if plots:
        lines += ["## Charts", ""] + [f"![{title}]({path})" for title, path in plots] + [""]
    lines += ["## Timeline", "", "| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {t['stage']} | {t['status']} | {_fmt(t['seconds'], 1)} |" for t in report["timeline"]]
    stages = [report["ensemble"], report.get("api"), report.get("tta")]
    failures = [{"name": m["name"], "error": m["error"]} for m in report["members"] if m["status"] == "failed"]
    failures += [{"name": r["stage"], "error": r["error"]} for r in stages if r and r["status"] == "failed"]
    lines += ["", "## Failures", ""] + ([f"- **{f['name']}**: {f['error']}" for f in failures] or ["none"])
    lines += ["", f"TensorBoard (hparams across members): `tensorboard --logdir {report['tensorboard']}`"]
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path, report: dict) -> None:
    from lightning_summ.pipeline.plots import write_plots
    from lightning_summ.pipeline.tensorboard import write_hparams

    report["plots"] = {title: path for title, path in write_plots(run_dir, report)}
    report["tensorboard"] = str(write_hparams(run_dir, report))
    with atomic_write(run_dir / "report.json") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    with atomic_write(run_dir / "report.md") as f:
        f.write(markdown(report, list(report["plots"].items())))
