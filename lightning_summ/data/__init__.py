"""Data: the DataModule, batching and collate functions, prompts, offline tokenizer training.

Exports are imported on first use (PEP 562): importing ``lightning_summ.data.batching`` must not run
the DataModule's imports (which import the processor, which imports the batching helpers).
"""

import importlib

_EXPORTS = {
    "SummarizationDataModule": "lightning_summ.data.datamodule",
    "DataError": "lightning_summ.io",
    "Example": "lightning_summ.io",
    "read_examples": "lightning_summ.io",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_summ.data' has no attribute {name!r}")
