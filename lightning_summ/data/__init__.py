from lightning_summ.data.datamodule import SummarizationDataModule
from lightning_summ.io import DataError, Example, read_examples

__all__ = ["SummarizationDataModule", "DataError", "Example", "read_examples"]
