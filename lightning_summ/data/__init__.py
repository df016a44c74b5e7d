"""Data: the DataModule, batching and collate functions, prompts, offline tokenizer training.

Exports are imported on first use (PEP 562): importing ``lightning_summ.data.batching`` must not run
the DataModule's imports (which import the processor, which imports the batching helpers).
"""

from lightning_summ._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "SummarizationDataModule": "lightning_summ.data.datamodule",
    "DataError": "lightning_summ.io",
    "Example": "lightning_summ.io",
    "read_examples": "lightning_summ.io",
})
