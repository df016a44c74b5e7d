"""Metrics: ROUGE that is right for Korean (morpheme / whitespace / char tokens, multi-reference).

Exports are imported on first use (PEP 562): importing one submodule does not import the others.
"""

import importlib

_EXPORTS = {
    "SummaryRouge": "lightning_summ.metrics.rouge",
    "rouge_from_files": "lightning_summ.metrics.rouge",
    "score_pair": "lightning_summ.metrics.rouge",
    "tokenize": "lightning_summ.metrics.rouge",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_summ.metrics' has no attribute {name!r}")
