"""The report's numbers as TensorBoard hparams: one run per member (and for the ensemble, TTA and the
API), so TensorBoard's HPARAMS tab lists them side by side with their settings. Metric tags name the
rows they were scored on (``own``: out-of-fold / validation, ``references``, ``api_rows``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

METRICS = ("r1", "r2", "rl", "rouge_mean")


def _metrics(prefix: str, scores: dict | None) -> dict:
    return {f"{prefix}/{k}": float(scores[k]) for k in METRICS} if scores else {}


def runs(report: dict) -> list[tuple[str, dict, dict]]:
    """(run name, hparams, metrics) per member, then ensemble, TTA and API (same hparam keys for all)."""
    ens = (report.get("ensemble") or {}).get("result") or {}
    refs = ens.get("scores") or {}
    api = (report.get("api") or {}).get("result") or {}
    out = []
    for m in report["members"]:
        r = m.get("result") or {}
        p = r.get("parameters") or {}
        hparams = {"member": m["name"], "kind": r.get("kind", "-"), "status": m["status"],
                   "parameters": int(p.get("total", p.get("in_checkpoint", 0))),
                   "train_seconds": float(r.get("train_seconds") or 0)}
        metrics = {**_metrics("own", r.get("scores")), **_metrics("references", refs.get(m["name"])),
                   **_metrics("api_rows", (api.get("members") or {}).get(m["name"]))}
        out.append((m["name"], hparams, metrics))
    blank = {"status": "done", "parameters": 0, "train_seconds": 0.0}
    if ens:
        out.append(("ensemble", {"member": "ensemble", "kind": ens["method"], **blank},
                    _metrics("references", refs.get("ensemble"))))
    tta = (report.get("tta") or {}).get("result") or {}
    if tta:
        out.append(("tta", {"member": "ensemble + TTA", "kind": ens.get("method", "-"), **blank},
                    _metrics("references", (tta.get("scores") or {}).get("with TTA"))))
    if api:
        out.append(("api", {"member": "API", "kind": api["model"], **blank}, _metrics("api_rows", api["scores"])))
    return out


def write_hparams(run_dir: Path, report: dict) -> Path:
    """Write ``<run>/tensorboard/<run name>/`` afresh (a rerun replaces the runs instead of adding
    duplicates beside them); returns the directory to give ``tensorboard --logdir``."""
    from torch.utils.tensorboard import SummaryWriter

    target, tmp = run_dir / "tensorboard", run_dir / ".tensorboard.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for name, hparams, metrics in runs(report):
        with SummaryWriter(str(tmp / name)) as writer:
            writer.add_hparams(hparams, metrics, run_name=".")  # "." : this run's own directory
    shutil.rmtree(target, ignore_errors=True)
    if tmp.is_dir():
        os.replace(tmp, target)
    return target
