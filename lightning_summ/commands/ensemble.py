"""``lightning_summ ensemble``: combine candidate files of any models (seq2seq, causal, API).

Every ``predict`` writes ``candidates.jsonl`` (one object per input: ``fname``, ``summary``,
``candidates`` with ``text`` and ``score``). This command combines several of them per input:

* ``mbr`` (minimum Bayes risk): pool all members' candidates and pick the one with the highest
  expected ROUGE against the others (weighted by member weight), i.e. the consensus summary;
* ``weighted``: each member votes for its best summary with its weight (e.g. its validation
  ROUGE); identical summaries add up; ties are broken by the MBR utility.

It writes the submission CSV (input order of the first file) and, beside it, a report of which
member each choice came from (``<output>.report.json``).

    lightning_summ ensemble --inputs a/candidates.jsonl b/candidates.jsonl --method mbr --output logs/ens.csv
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from lightning_summ.commands._args import verb_parser
from lightning_summ.console import say
from lightning_summ.errors import ConfigError, DataError
from lightning_summ.io import read_candidates, write_submission
from lightning_summ.outputs import atomic_write, check_writable


def combine(members: list[dict[str, list[str]]], names: list[str], method: str, weights: list[float],
            tokenizer: str) -> list[dict]:
    """One ``{fname, summary, member}`` per input of the first member, in its order."""
    from lightning_summ.decoding.mbr import mbr_pick

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


def _weight_from(path: str) -> float:
    """The ``rouge_mean`` of a result JSON (a cv fold's ``result.json``)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))["rouge_mean"]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON file ({e})") from None
    except (KeyError, TypeError):
        raise DataError(f"{path}: field 'rouge_mean' is missing") from None
    if not isinstance(value, (int, float)):
        raise DataError(f"{path}: field 'rouge_mean': expected a number, got {value!r}")
    return float(value)


def _parser():
    parser = verb_parser("ensemble", __doc__)
    parser.add_argument("--inputs", nargs="+", type=str, required=True, help="candidates.jsonl files, one per member")
    parser.add_argument("--method", choices=["mbr", "weighted"], default="mbr", help="how candidates are combined")
    parser.add_argument("--weights", nargs="+", type=float, help="one weight per member (e.g. validation ROUGE)")
    parser.add_argument("--weights_from", nargs="+", type=str,
                        help="one JSON per member with a rouge_mean key (a cv fold's result.json) to use as weight")
    parser.add_argument("--tokenizer", choices=["morpheme", "whitespace", "char"], default="morpheme",
                        help="ROUGE tokens for the MBR utility")
    parser.add_argument("--output", type=str, required=True, help="submission CSV; the report goes beside it")
    return parser


def main(args: list[str]) -> list[dict]:
    options = _parser().parse_args(args)
    if options.weights and options.weights_from:
        raise ConfigError("give --weights or --weights_from, not both")
    weights = options.weights or ([_weight_from(p) for p in options.weights_from] if options.weights_from
                                  else [1.0] * len(options.inputs))
    if len(weights) != len(options.inputs):
        raise ConfigError(f"--weights: {len(weights)} weights for {len(options.inputs)} --inputs")
    check_writable(options.output, "--output")  # the report goes beside it, in the same directory
    members = [read_candidates(p) for p in options.inputs]
    chosen = combine(members, options.inputs, options.method, weights, options.tokenizer)
    out = Path(options.output)
    write_submission(out, ((c["fname"], c["summary"]) for c in chosen))
    report = {"method": options.method, "weights": dict(zip(options.inputs, weights)),
              "chosen_from": dict(Counter(c["member"] for c in chosen)), "rows": chosen}
    report_path = out.with_suffix(".report.json")
    with atomic_write(report_path) as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    say(f"chosen from: {json.dumps(report['chosen_from'])}")
    say(f"Wrote {len(chosen)} summaries to {out} (report: {report_path})")
    return chosen
