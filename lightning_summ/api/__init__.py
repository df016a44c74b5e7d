from lightning_summ.api.client import ApiError, ApiSummarizer

__all__ = ["ApiSummarizer", "ApiError"]
