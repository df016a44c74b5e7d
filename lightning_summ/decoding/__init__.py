"""Decoding strategies: how summaries are made from a batch (HF generate, soft voting, TTA, API)."""
