"""Lightning callbacks: submission writer, speed monitor, progress bar, test-time augmentation, generation-aware checkpoints.

Exports are imported on first use (PEP 562): importing one submodule does not import the others.
"""

from lightning_summ._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "SubmissionWriter": "lightning_summ.callbacks.submission_writer",
    "SpeedMonitor": "lightning_summ.callbacks.speed",
    "ThrottledProgressBar": "lightning_summ.callbacks.progress",
    "ThrottledRichProgressBar": "lightning_summ.callbacks.progress",
    "TestTimeAugmentation": "lightning_summ.callbacks.tta",
    "GenerationCheckpoint": "lightning_summ.callbacks.checkpoint",
    "GenerationEarlyStopping": "lightning_summ.callbacks.checkpoint",
})
