"""The OpenAI-compatible API client (baseline summarizer) and server.

Exports are imported on first use (PEP 562): importing one submodule does not import the others.
"""

import importlib

_EXPORTS = {
    "ApiClient": "lightning_summ.api.client",
    "ApiSummarizer": "lightning_summ.api.client",
    "ApiError": "lightning_summ.api.client",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_summ.api' has no attribute {name!r}")
