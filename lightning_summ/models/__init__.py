"""Trained and evaluation-only summarizers.

Exports are imported on first use (PEP 562): importing one submodule does not import the others.
"""

import importlib

_EXPORTS = {
    "SummarizerBase": "lightning_summ.models.base",
    "Seq2SeqSummarizer": "lightning_summ.models.seq2seq",
    "CausalLMSummarizer": "lightning_summ.models.causal",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_summ.models' has no attribute {name!r}")
