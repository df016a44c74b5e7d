from lightning_summ.callbacks.speed import SpeedMonitor
from lightning_summ.callbacks.submission_writer import SubmissionWriter

__all__ = ["SubmissionWriter", "SpeedMonitor"]
