"""The pipeline's one way to score a file: the project's ROUGE, R1/R2/RL as F1 in [0, 1] and
``rouge_mean`` (the leaderboard number, x100), with the tokenizer and multi-reference rule of the run."""

from __future__ import annotations

import statistics

METRICS = ("r1", "r2", "rl", "rouge_mean")


def score_file(predictions, references, tokenizer: str, multi_ref: str) -> dict:
    """``{r1, r2, rl, rouge_mean, n}`` of a ``fname,summary`` file against a references file."""
    from lightning_summ.metrics.rouge import rouge_from_files
    from lightning_summ.paths import resolve_path

    scores = rouge_from_files(predictions, resolve_path(str(references)), tokenizer=tokenizer, multi_ref=multi_ref)
    return {**{k: scores[k] for k in METRICS}, "n": scores["n"]}


def mean_scores(scores: list[dict]) -> dict:
    """The mean of each metric over several scored files (a k-fold member's checkpoints)."""
    return {**{k: statistics.fmean(s[k] for s in scores) for k in METRICS}, "n": scores[0]["n"]}
