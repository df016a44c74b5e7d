"""``lightning_summ ensemble``: combine candidate files of any models (seq2seq, causal, API).

Every ``predict`` writes ``candidates.jsonl`` (one object per input: ``fname``, ``summary``,
``candidates`` with ``text`` and ``score``). This command combines several of them per input:

* ``mbr`` (minimum Bayes risk): pool all members' candidates and pick the one with the highest
  expected ROUGE against the others (weighted by member weight), i.e. the consensus summary;
* ``weighted``: each member votes for its best summary with its weight (e.g. its validation
  ROUGE); identical summaries add up; ties are broken by the MBR utility.

It writes the submission CSV (input order of the first file) and a report of which member each
choice came from.

    lightning_summ ensemble --inputs a/candidates.jsonl b/candidates.jsonl --method mbr --output ens.csv
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Optional

from lightning_summ.data.readers import DataError
from lightning_summ.io_utils import atomic_write, write_submission
from lightning_summ.metrics.rouge import rouge_l, rouge_n, tokenize


def read_candidates(path: str) -> dict[str, list[str]]:
    """fname -> candidate texts, best first (file order kept)."""
    rows: dict[str, list[str]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            texts = [c["text"] for c in record.get("candidates") or []] or [record["summary"]]
            rows[record["fname"]] = texts
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{path}: row {i}: expected fname and candidates/summary ({e})") from None
    if not rows:
        raise DataError(f"{path}: the file is empty")
    return rows


def utility(tokens: list[str], other: list[str]) -> float:
    """Mean of ROUGE-1/2/L F1: the competition's per-summary score."""
    return (rouge_n(tokens, other, 1) + rouge_n(tokens, other, 2) + rouge_l(tokens, other)) / 3


def mbr_pick(pool: list[tuple[int, str]], weights: list[float], tokenizer: str) -> int:
    """Index into ``pool`` ((member, text) pairs) of the candidate with the highest weighted
    expected ROUGE against all other candidates."""
    tokens = [tokenize(text, tokenizer) for _, text in pool]
    best, best_u = 0, float("-inf")
    for i in range(len(pool)):
        total = sum(weights[pool[j][0]] * utility(tokens[i], tokens[j]) for j in range(len(pool)) if j != i)
        norm = sum(weights[pool[j][0]] for j in range(len(pool)) if j != i) or 1.0
        if total / norm > best_u:
            best, best_u = i, total / norm
    return best


def combine(members: list[dict[str, list[str]]], names: list[str], method: str, weights: list[float],
            tokenizer: str) -> list[dict]:
    order = list(members[0])
    for name, member in zip(names, members):
        missing = [f for f in order if f not in member]
        if missing or len(member) != len(order):
            raise DataError(f"{name}: covers {len(member)} inputs, the first file {len(order)} "
                            f"(first missing: {missing[:3]})")
    chosen = []
    for fname in order:
        if method == "mbr":
            pool = [(m, text) for m, member in enumerate(members) for text in member[fname]]
            member_idx, text = pool[mbr_pick(pool, weights, tokenizer)]
        else:
            votes: Counter = Counter()
            for m, member in enumerate(members):
                votes[member[fname][0].strip()] += weights[m]
            top = max(votes.values())
            tied = [(m, member[fname][0]) for m, member in enumerate(members) if votes[member[fname][0].strip()] == top]
            member_idx, text = tied[mbr_pick(tied, weights, tokenizer)] if len(tied) > 1 else tied[0]
        chosen.append({"fname": fname, "summary": text, "member": names[member_idx]})
    return chosen


def main(argv: list[str]) -> Optional[list[dict]]:
    parser = argparse.ArgumentParser(prog="lightning_summ ensemble", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", required=True, help="candidates.jsonl files, one per member")
    parser.add_argument("--method", choices=["mbr", "weighted"], default="mbr")
    parser.add_argument("--weights", nargs="+", type=float, help="one weight per member (e.g. validation ROUGE)")
    parser.add_argument("--weights_from", nargs="+",
                        help="one JSON per member with a rouge_mean key (a cv fold's result.json) to use as weight")
    parser.add_argument("--tokenizer", choices=["morpheme", "whitespace", "char"], default="morpheme")
    parser.add_argument("--output", required=True, help="submission CSV; the report goes beside it")
    args = parser.parse_args(argv)
    if args.weights and args.weights_from:
        parser.error("give --weights or --weights_from, not both")
    weights = args.weights or ([json.loads(Path(p).read_text())["rouge_mean"] for p in args.weights_from]
                               if args.weights_from else [1.0] * len(args.inputs))
    if len(weights) != len(args.inputs):
        parser.error(f"{len(weights)} weights for {len(args.inputs)} inputs")
    members = [read_candidates(p) for p in args.inputs]
    chosen = combine(members, args.inputs, args.method, weights, args.tokenizer)
    out = Path(args.output)
    write_submission(out, ((c["fname"], c["summary"]) for c in chosen))
    report = {"method": args.method, "weights": dict(zip(args.inputs, weights)),
              "chosen_from": dict(Counter(c["member"] for c in chosen)), "rows": chosen}
    report_path = out.with_suffix(".report.json")
    with atomic_write(report_path) as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    print(f"chosen from: {json.dumps(report['chosen_from'])}")
    print(f"Wrote {len(chosen)} summaries to {out} (report: {report_path})", flush=True)
    return chosen
