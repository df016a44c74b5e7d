from lightning_summ.models.base import SummarizerBase
from lightning_summ.models.causal import CausalLMSummarizer
from lightning_summ.models.seq2seq import Seq2SeqSummarizer

__all__ = ["SummarizerBase", "Seq2SeqSummarizer", "CausalLMSummarizer"]
