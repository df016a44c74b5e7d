"""The report's charts as PNG (matplotlib, Agg: no display needed): the stages as bars over wall time,
and R1/R2/RL/mean per member, ensemble, TTA and API, one panel per set of rows scored (the members' own
rows, the references of the predict file, the API's rows): numbers on different rows are never put
side by side as if comparable."""

from __future__ import annotations

import os
from pathlib import Path

METRICS = (("r1", "R1"), ("r2", "R2"), ("rl", "RL"), ("rouge_mean", "mean"))
COLORS = {"done": "tab:green", "failed": "tab:red", "skipped (done)": "tab:gray"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window, whatever the user's default backend
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Atomically: a crash never leaves a half-written PNG under the linked name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    os.replace(tmp, path)


def timeline_chart(timeline: list[dict], path: Path) -> bool:
    stages = [t for t in timeline if t.get("start") is not None]
    if not stages:
        return False
    plt = _pyplot()
    t0 = min(t["start"] for t in stages)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(stages) + 1.2), constrained_layout=True)
    for y, t in enumerate(stages):
        ax.barh(y, max(t["seconds"], 0.01), left=t["start"] - t0, color=COLORS.get(t["status"], "tab:blue"))
        note = {"skipped (done)": " (an earlier run; skipped now)", "failed": " FAILED"}.get(t["status"], "")
        ax.text(t["start"] - t0 + t["seconds"], y, f" {t['seconds']:.1f} s{note}", va="center", fontsize=8)
    ax.set_yticks(range(len(stages)), [t["stage"] for t in stages])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first stage started")
    ax.set_title("Pipeline stages over wall time")
    ax.set_xlim(0, max(t["start"] - t0 + t["seconds"] for t in stages) * 1.35 + 1)
    _save(fig, path)
    plt.close(fig)
    return True


def score_panels(report: dict) -> list[tuple[str, dict]]:
    """(title, {name: scores}) for each set of rows that has scores."""
    panels = []
    own = {m["name"]: m["result"]["scores"] for m in report["members"] if m["status"] == "done"}
    if own:
        panels.append(("members on their own rows (out-of-fold / validation)", own))
    ens, tta = report.get("ensemble") or {}, report.get("tta") or {}
    refs = dict((ens.get("result") or {}).get("scores") or {})
    if (tta.get("result") or {}).get("scores"):
        refs["ensemble + TTA"] = tta["result"]["scores"]["with TTA"]
    if refs:
        panels.append(("on the references of the predict file", refs))
    api = report.get("api") or {}
    if api.get("status") == "done":
        r = api["result"]
        panels.append((f"on the API's {r['rows']} validation rows", {"API": r["scores"], **r["members"]}))
    return panels


def score_chart(report: dict, path: Path) -> bool:
    panels = score_panels(report)
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), squeeze=False,
                             constrained_layout=True)
    width = 0.8 / len(METRICS)
    for ax, (title, scores) in zip(axes[:, 0], panels):
        names = list(scores)
        for j, (key, label) in enumerate(METRICS):
            values = [scores[n][key] * (1 if key == "rouge_mean" else 100) for n in names]
            ax.bar([i + (j - 1.5) * width for i in range(len(names))], values, width, label=label)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylabel("ROUGE x100")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, ncols=4)
    fig.suptitle(f"ROUGE ({report.get('rouge_tokenizer')} tokens)")
    _save(fig, path)
    plt.close(fig)
    return True


def write_plots(run_dir: Path, report: dict) -> list[tuple[str, str]]:
    """The charts written (title, path relative to the run directory, as report.md links them)."""
    written = []
    if timeline_chart(report["timeline"], run_dir / "plots" / "timeline.png"):
        written.append(("timeline", "plots/timeline.png"))
    if score_chart(report, run_dir / "plots" / "scores.png"):
        written.append(("scores", "plots/scores.png"))
    return written
