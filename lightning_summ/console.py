"""What the commands tell the user (progress and results) on stdout, once per job.

Under DDP every rank runs the same code; only rank zero prints. The rank is Lightning's own
``rank_zero_only.rank`` (set from the launcher's environment when Lightning is imported and by the
strategy when it starts). A process that never imported Lightning (``score``, ``ensemble``) is one
process, rank zero.
"""

from __future__ import annotations

from lightning_utilities.core.rank_zero import rank_zero_only


def say(message: str) -> None:
    """Print ``message`` on stdout (flushed) on rank zero only."""
    if getattr(rank_zero_only, "rank", 0) == 0:
        print(message, flush=True)
