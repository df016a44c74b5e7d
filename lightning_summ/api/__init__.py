"""The OpenAI-compatible API client (baseline summarizer) and server.

Exports are imported on first use (PEP 562): importing one submodule does not import the others.
"""

from lightning_summ._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ApiClient": "lightning_summ.api.client",
    "ApiSummarizer": "lightning_summ.api.client",
    "ApiError": "lightning_summ.api.client",
})
