"""Minimum Bayes risk selection: the candidate with the highest expected ROUGE against the others.

Used by the ``ensemble`` command (candidates of several models) and by test-time augmentation
(candidates of several views of one dialogue).
"""

from __future__ import annotations

from lightning_summ.metrics.rouge import rouge_l, rouge_n, tokenize


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
