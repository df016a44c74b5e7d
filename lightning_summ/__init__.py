"""lightning_summ: fine-tune and run abstractive summarizers with PyTorch Lightning."""

__version__ = "0.1.0"

import logging

from lightning_summ._lazy import lazy_exports

# bitsandbytes (imported by peft) warns at import, on every CPU with AVX-512 BF16, that an optional
# faster CPU kernel package ("kernels") is missing: nothing to do for a user, printed on every run.
# Only that record is dropped; the logger's other messages and level stay the user's.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward from kernels-community"))

__getattr__, __all__ = lazy_exports(__name__, {
    "SummarizationDataModule": "lightning_summ.data.datamodule",
    "Seq2SeqSummarizer": "lightning_summ.models.seq2seq",
    "SummaryRouge": "lightning_summ.metrics.rouge",
    "SubmissionWriter": "lightning_summ.callbacks.submission_writer",
    "GenerationSettings": "lightning_summ.models.settings",
    "OptimizerSettings": "lightning_summ.models.settings",
    "EvaluationSettings": "lightning_summ.models.settings",
})
