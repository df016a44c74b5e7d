"""Lightning callbacks: submission writer, speed monitor, test-time augmentation, generation-aware checkpoints.

Exports are imported on first use (PEP 562): importing one submodule does not import the others.
"""

import importlib

_EXPORTS = {
    "SubmissionWriter": "lightning_summ.callbacks.submission_writer",
    "SpeedMonitor": "lightning_summ.callbacks.speed",
    "TestTimeAugmentation": "lightning_summ.callbacks.tta",
    "GenerationCheckpoint": "lightning_summ.callbacks.checkpoint",
    "GenerationEarlyStopping": "lightning_summ.callbacks.checkpoint",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_summ.callbacks' has no attribute {name!r}")
