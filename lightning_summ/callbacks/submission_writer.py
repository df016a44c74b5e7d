"""Write ``predict`` results: the submission CSV and a JSONL of candidates with scores."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_summ.console import say
from lightning_summ.io import write_candidates, write_submission


def gather_records(trainer, predictions: list) -> list[dict]:
    """All ranks' prediction records, de-duplicated by row index, in input order."""
    records = [r for batch in predictions for r in batch]
    if trainer.world_size > 1:
        import torch.distributed as dist

        gathered = [None] * trainer.world_size
        dist.all_gather_object(gathered, records)
        records = [r for part in gathered for r in part]
    return sorted({r["index"]: r for r in records}.values(), key=lambda r: r["index"])


class SubmissionWriter(BasePredictionWriter):
    """Write ``fname,summary`` rows in input order, plus a candidates JSONL (the ensemble format).

    Args:
        output_path: the submission CSV; ``None`` writes ``submission.csv`` in the run's log
            directory (printed at the end).
        candidates_path: JSONL with one object per input: ``fname``, ``summary`` and ``candidates``
            (each ``text`` + ``score``: beam search's length-penalised sum of token log-probabilities,
            the mean token log-probability for greedy/sampling, 0 for APIs); ``None`` writes
            ``candidates.jsonl`` beside the CSV; ``""`` writes none.
    """

    def __init__(self, output_path: Optional[str] = None, candidates_path: Optional[str] = None):
        super().__init__(write_interval="epoch")
        self.output_path, self.candidates_path = output_path, candidates_path
        self.written: Optional[Path] = None

    def paths(self, log_dir: Optional[str]) -> tuple[Path, Optional[Path]]:
        """(the submission CSV, the candidates JSONL or ``None``) for a run whose log directory is ``log_dir``."""
        csv_path = Path(self.output_path or Path(log_dir or ".") / "submission.csv")
        if self.candidates_path == "":
            return csv_path, None
        return csv_path, Path(self.candidates_path or csv_path.with_name("candidates.jsonl"))

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        records = gather_records(trainer, predictions)
        log_dir = trainer.log_dir  # a collective call under DDP: every rank must ask, before rank 0 alone writes
        if not trainer.is_global_zero:
            return
        csv_path, jsonl = self.paths(log_dir)
        write_submission(csv_path, ((r["fname"], r["summary"]) for r in records))
        if jsonl is not None:
            write_candidates(jsonl, records)
        self.written = csv_path
        say(f"Wrote {len(records)} summaries to {csv_path}")
