"""The pipeline's last stages (beside the commands: they run `predict`): the ensemble of the finished
members' predictions of the predict file, and the same decodings again with test-time augmentation.

What is decoded depends on the method (see ``lightning_summ/pipeline/spec.py``): ``mbr``/``weighted``
combine every checkpoint of every member (their plain predictions exist already: the members wrote
them), ``soft_voting`` decodes once with the best member's checkpoints together
(``model.init_args.ensemble_checkpoints``), ``none`` keeps the best member's first checkpoint. The TTA
stage decodes exactly those checkpoints again with the ``TestTimeAugmentation`` callback and combines
them the same way, so the two files differ only by TTA.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from lightning_summ.commands._pipeline_members import predict
from lightning_summ.errors import ConfigError
from lightning_summ.io import read_candidates, read_submission, write_submission


def best_member(done: list[dict]) -> dict:
    """The finished member with the highest own score (out-of-fold or validation rouge_mean)."""
    return max(done, key=lambda m: m["result"]["scores"]["rouge_mean"])


def decodings(method: str, done: list[dict]) -> list[dict]:
    """The decodings the final submission combines: a member, a checkpoint (plus the others decoding
    with it under soft voting), its ensemble weight and, when it exists, its plain prediction."""
    def one(m: dict, i: int, others: list[str], weight: float = 1.0) -> dict:
        r = m["result"]
        plain = {"submission": r["submissions"][i], "candidates": r["candidates"][i]} if not others else None
        label = m["name"] if len(r["checkpoints"]) == 1 or others else f"{m['name']}/{i}"
        return {"label": label, "member": m, "ckpt": r["checkpoints"][i], "others": others, "weight": weight,
                "plain": plain}

    for m in done:
        if "checkpoints" not in m["result"]:
            raise ConfigError(f"member {m['name']}: its stage record is from an older lightning_summ (no checkpoints "
                              f"listed); rerun with --pipeline.restart member:{m['name']}")
    if method in ("mbr", "weighted"):
        return [one(m, i, [], m["result"]["scores"]["rouge_mean"] if method == "weighted" else 1.0)
                for m in done for i in range(len(m["result"]["checkpoints"]))]
    best = best_member(done)
    return [one(best, 0, best["result"]["checkpoints"][1:] if method == "soft_voting" else [])]


def tta_flags(tta: dict, tokenizer: str) -> list[str]:
    return ["--trainer.callbacks+=lightning_summ.callbacks.TestTimeAugmentation",
            f"--trainer.callbacks.num_aug={tta['num_aug']}",
            f"--trainer.callbacks.augmenters={json.dumps(tta['augmenters'])}",
            f"--trainer.callbacks.rouge_tokenizer={tokenizer}"]


def _tta_stats(cli) -> dict:
    from lightning_summ.callbacks.tta import TestTimeAugmentation

    callback = next(c for c in cli.trainer.callbacks if isinstance(c, TestTimeAugmentation))
    return dict(callback.last.stats) if callback.last else {}


def decode(d: dict, run_dir: Path, stage: str, tta: Optional[dict], tokenizer: str) -> dict:
    """The decoding's files: its plain prediction when there is one and TTA is off, else a new predict."""
    if tta is None and d["plain"]:
        return dict(d["plain"])
    member = d["member"]
    member_dir = run_dir / "members" / member["name"]
    extra = [f"--model.init_args.ensemble_checkpoints={json.dumps(d['others'])}"] if d["others"] else []
    extra += tta_flags(tta, tokenizer) if tta else []
    out = predict(member, member_dir, d["ckpt"], member_dir / stage / d["label"].replace("/", "_"), extra)
    return {"submission": out["submission"], "candidates": out["candidates"],
            **({"tta_stats": _tta_stats(out["cli"])} if tta else {})}


def combine_into(method: str, decs: list[dict], files: list[dict], tokenizer: str, out: Path) -> dict:
    """Write the combined submission to ``out``; which decoding each row came from."""
    if len(decs) == 1:  # soft voting, none, or an ensemble of one: that decoding is the submission
        rows = list(read_submission(files[0]["submission"]).items())
        chosen_from = {decs[0]["label"]: len(rows)}
    else:
        from lightning_summ.commands.ensemble import combine

        chosen = combine([read_candidates(f["candidates"]) for f in files], [d["label"] for d in decs], method,
                         [d["weight"] for d in decs], tokenizer)
        rows = [(c["fname"], c["summary"]) for c in chosen]
        chosen_from = {}
        for c in chosen:
            chosen_from[c["member"]] = chosen_from.get(c["member"], 0) + 1
    write_submission(out, rows)
    return chosen_from


def final_stage(spec: dict, done: list[dict], run_dir: Path, tokenizer: str, with_tta: bool) -> dict:
    """The ensemble stage (``with_tta=False``: ``ensemble.csv``) or the TTA stage (``tta.csv``, compared
    with the ensemble's file, so it needs the ensemble stage finished)."""
    if not done:
        raise RuntimeError("no member finished")
    method = spec["ensemble"]["method"]
    stage, tta = ("tta", spec["tta"]) if with_tta else ("ensemble", None)
    decs = decodings(method, done)
    files = [decode(d, run_dir, stage, tta, tokenizer) for d in decs]
    out = run_dir / f"{stage}.csv"
    chosen_from = combine_into(method, decs, files, tokenizer, out)
    result = {"method": method, "output": str(out), "chosen_from": chosen_from,
              "decodings": [{"label": d["label"], "checkpoint": d["ckpt"], "soft_voting_with": d["others"],
                             "weight": d["weight"], **f} for d, f in zip(decs, files)]}
    if with_tta:
        result["tta"] = spec["tta"]
        result["changed_rows"] = changed_rows(run_dir / "ensemble.csv", out)
    return result


def changed_rows(plain: Path, augmented: Path) -> int:
    """Rows whose summary TTA changed (the same decodings and combination, with vs without TTA)."""
    before, after = read_submission(plain), read_submission(augmented)
    return sum(before[f] != after.get(f) for f in before)
