"""Metrics: ROUGE that is right for Korean (morpheme / whitespace / char tokens, multi-reference)."""

from lightning_summ.metrics.rouge import SummaryRouge, rouge_from_files, score_pair, tokenize

__all__ = ["SummaryRouge", "rouge_from_files", "score_pair", "tokenize"]
