"""Scores of the time-to-quality workload (``quality.py``), the same for every variant: ROUGE by
rouge-score with Porter stemming (F1 averaged over a dialogue's references, then over dialogues),
the summaries' mean length and how many are distinct."""

from __future__ import annotations


def rouge(predictions: list[str], references: list[list[str]]) -> dict:
    """ROUGE-1/2/L F1 x 100 by rouge-score with stemming: mean over each dialogue's references, then over dialogues."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"r1": 0.0, "r2": 0.0, "rl": 0.0}
    for pred, refs in zip(predictions, references, strict=True):
        scores = [scorer.score(ref, pred) for ref in refs]
        for key, name in (("r1", "rouge1"), ("r2", "rouge2"), ("rl", "rougeL")):
            totals[key] += sum(s[name].fmeasure for s in scores) / len(scores)
    return {k: round(100 * v / len(predictions), 2) for k, v in totals.items()}


def summary_stats(predictions: list[str], references: list[list[str]]) -> dict:
    """ROUGE plus the mean words per summary, the distinct summaries and the first three as examples."""
    words = sum(len(p.split()) for p in predictions) / len(predictions)
    return {**rouge(predictions, references), "mean_words": round(words, 1), "distinct": len(set(predictions)),
            "rows": len(predictions), "examples": predictions[:3]}


def scored(texts: list[str], refs: list[list[str]], seconds) -> dict:
    """One decode's entry of a variant's result: generation rate (None when not timed), scores, texts."""
    return {"gen_samples_per_s": round(len(texts) / seconds, 3) if seconds else None, **summary_stats(texts, refs),
            "predictions": texts}
