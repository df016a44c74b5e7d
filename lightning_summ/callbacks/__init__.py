from lightning_summ.callbacks.speed import SpeedMonitor
from lightning_summ.callbacks.submission_writer import SubmissionWriter

from lightning_summ.callbacks.tta import TestTimeAugmentation

__all__ = ["SubmissionWriter", "SpeedMonitor", "TestTimeAugmentation"]
