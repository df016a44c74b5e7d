"""Trained and evaluation-only summarizers.

Exports are imported on first use (PEP 562): importing one submodule does not import the others.
"""

from lightning_summ._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "SummarizerBase": "lightning_summ.models.base",
    "Seq2SeqSummarizer": "lightning_summ.models.seq2seq",
    "CausalLMSummarizer": "lightning_summ.models.causal",
})
