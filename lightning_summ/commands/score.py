"""``lightning_summ score``: ROUGE of a submission against references, as the competition computes it.

    lightning_summ score --predictions logs/quickstart/version_0/submission.csv \\
                         --references lightning_summ/sample_data/test.csv

Prints a table and, as the last line, the scores as JSON.
"""

from __future__ import annotations

import json
from typing import Literal

from lightning_summ.commands._args import verb_parser
from lightning_summ.console import say

METRICS = ("r1", "r2", "rl", "rouge_mean", "rouge_sum")


def score(predictions: str, references: str, tokenizer: Literal["morpheme", "whitespace", "char"] = "morpheme",
          multi_ref: Literal["mean", "max"] = "mean") -> dict:
    """Score a submission CSV (``fname,summary``) against a file with references.

    Args:
        predictions: CSV with ``fname`` and ``summary`` columns.
        references: CSV/JSONL with ``fname`` and ``summary`` (or ``summary1``..``summaryN``).
        tokenizer: ROUGE tokens: ``morpheme`` (Korean), ``whitespace`` or ``char``.
        multi_ref: several references are combined by ``mean`` (competition) or ``max``.
    """
    from lightning_summ.metrics.rouge import rouge_from_files

    result = rouge_from_files(predictions, references, tokenizer=tokenizer, multi_ref=multi_ref)
    say(f"{'metric':<12}{'value':>10}")
    for key in METRICS:
        say(f"{key:<12}{result[key]:>10.4f}")
    say(json.dumps(result))
    return result


def main(args: list[str]) -> dict:
    parser = verb_parser("score", __doc__)
    parser.add_function_arguments(score, as_positional=False)
    return score(**parser.parse_args(args).as_dict())
