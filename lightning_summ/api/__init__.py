from lightning_summ.api.client import ApiClient, ApiError, ApiSummarizer

__all__ = ["ApiClient", "ApiSummarizer", "ApiError"]
