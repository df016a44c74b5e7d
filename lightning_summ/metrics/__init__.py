"""Metrics: ROUGE that is right for Korean (morpheme / whitespace / char tokens, multi-reference).

Exports are imported on first use (PEP 562): importing one submodule does not import the others.
"""

from lightning_summ._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "SummaryRouge": "lightning_summ.metrics.rouge",
    "rouge_from_files": "lightning_summ.metrics.rouge",
    "score_pair": "lightning_summ.metrics.rouge",
    "tokenize": "lightning_summ.metrics.rouge",
})
