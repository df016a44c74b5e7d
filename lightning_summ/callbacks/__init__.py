from lightning_summ.callbacks.submission_writer import SubmissionWriter

__all__ = ["SubmissionWriter"]
