"""lightning_summ: fine-tune and run abstractive summarizers with PyTorch Lightning."""

import importlib

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that ``import lightning_summ.<module>`` and the command line's
# ``--help`` do not pay for importing torch and Lightning.
_EXPORTS = {
    "SummarizationDataModule": "lightning_summ.data.datamodule",
    "Seq2SeqSummarizer": "lightning_summ.models.seq2seq",
    "SummaryRouge": "lightning_summ.metrics.rouge",
    "SubmissionWriter": "lightning_summ.callbacks.submission_writer",
    "GenerationSettings": "lightning_summ.models.settings",
    "OptimizerSettings": "lightning_summ.models.settings",
    "EvaluationSettings": "lightning_summ.models.settings",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_summ' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
