"""lightning_summ: fine-tune and run abstractive summarizers with PyTorch Lightning."""

from lightning_summ.callbacks.submission_writer import SubmissionWriter
from lightning_summ.data.datamodule import SummarizationDataModule
from lightning_summ.metrics.rouge import SummaryRouge
from lightning_summ.models.seq2seq import Seq2SeqSummarizer
from lightning_summ.models.settings import EvaluationSettings, GenerationSettings, OptimizerSettings

__version__ = "0.1.0"
__all__ = ["SummarizationDataModule", "Seq2SeqSummarizer", "SummaryRouge", "SubmissionWriter",
           "GenerationSettings", "OptimizerSettings", "EvaluationSettings"]
