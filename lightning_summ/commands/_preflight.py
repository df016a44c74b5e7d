"""Checks of the user's input that run before a Lightning verb starts, each failing in one line.

The Trainer creates the run directory (``logger.experiment``, first thing in its setup hook, then
``config.yaml``) before it reads a data file or a checkpoint, and a prediction writes its submission
only at the end. So a bad data file or checkpoint left an empty ``logs/<name>/version_N`` behind,
and an unwritable output path failed after the whole prediction. Here the outputs are probed, the
stage's files read and encoded (the DataModule keeps them, its setup in the Trainer finds them done)
and the checkpoint's processor verified, all before the Trainer runs. What only the run itself can
check (a model setting its setup refuses, say) still fails in one line, and then the run directory
it created is removed again unless it holds a checkpoint (:func:`discard_new_run_directory`).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Optional

from lightning_utilities.core.rank_zero import rank_zero_only

from lightning_summ.callbacks.submission_writer import SubmissionWriter
from lightning_summ.errors import ConfigError
from lightning_summ.models.evaluation import read_checkpoint
from lightning_summ.outputs import check_writable

LIGHTNING_CHECKPOINT_NAMES = ("last", "best", "hpc", "registry")


def check_checkpoint_file(ckpt_path: Optional[str]) -> None:
    """A missing, truncated or foreign ``--ckpt_path`` is one line before anything runs (torch's own
    messages about a broken zip archive are a page of traceback, and come after the model is built)."""
    if not ckpt_path or ckpt_path in LIGHTNING_CHECKPOINT_NAMES:
        return
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"--ckpt_path {path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise ConfigError(f"--ckpt_path {path}: not a readable checkpoint (truncated, or not written by torch.save)")


def saved_processor_state(ckpt_path: Optional[str]) -> dict:
    """What a checkpoint of ours records about its processor (``{"processor": state, "tags": [...]}``);
    empty for Lightning's named checkpoints (``best``, ...) or none. Reads no weights (memory-mapped)."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return {}
    return read_checkpoint(ckpt_path, mmap=True).get("lightning_summ") or {}


def preflight(cli, subcommand: str) -> None:
    """Fail in one line before ``subcommand`` starts: an output that cannot be written, a data file
    that cannot be read, a checkpoint made with another processor. Without a training file, the
    tags come from the checkpoint (``predict --ckpt_path X --data.predict_path Y`` needs no other file)."""
    config = cli.config_init[subcommand]
    if rank_zero_only.rank == 0:  # the probes create and remove files: one process does
        for path, option, directory in run_outputs(cli, subcommand):
            check_writable(path, option, directory=directory)
        run_dir = None if subcommand == "export" or cli.trainer.log_dir is None else Path(cli.trainer.log_dir)
        if run_dir is not None and not run_dir.exists():  # with the folder above it that exists already
            cli.new_run_directory = (run_dir, _existing_ancestor(run_dir))
    ckpt_path = config.get("ckpt_path")
    saved = saved_processor_state(ckpt_path)
    cli.datamodule.use_checkpoint_tags(saved.get("tags"))
    if subcommand == "export":
        cli.datamodule.fit_processor()
    else:
        cli.datamodule.setup(subcommand)
    if "processor" in saved:  # the same check as on load, before the run directory exists
        cli.model.processor.verify(saved["processor"], source=f"--ckpt_path {ckpt_path}")


def run_outputs(cli, subcommand: str) -> list[tuple[str, str, bool]]:
    """``(path, the option that sets it, whether it is a directory)`` for what ``subcommand`` writes."""
    if subcommand == "export":
        return [(cli.config_init.export.output_dir, "--output_dir", True)]
    trainer = cli.trainer
    # TensorBoard's version_N, the default_root_dir without a logger; None under fast_dev_run (no logs)
    log_dir = trainer.log_dir
    option = "--trainer.logger.init_args.save_dir" if getattr(trainer.logger, "save_dir", None) \
        else "--trainer.default_root_dir"
    outputs = [(log_dir, option, True)] if log_dir is not None else []
    writer = next((c for c in trainer.callbacks if isinstance(c, SubmissionWriter)), None)
    if subcommand == "predict" and writer is not None:
        submission, candidates = writer.paths(log_dir)
        outputs.append((submission, "--submission.output_path", False))
        if candidates is not None:
            outputs.append((candidates, "--submission.candidates_path", False))
    return outputs


def _existing_ancestor(path: Path) -> Path:
    return next(folder for folder in path.parents if folder.is_dir())


def discard_new_run_directory(cli) -> None:
    """After a run failed on the user's input: remove the run directory it created (events file,
    ``config.yaml``) and the folders made for it, unless a checkpoint was written there."""
    created = getattr(cli, "new_run_directory", None)
    if created is None or rank_zero_only.rank != 0:
        return
    run_dir, existing = created
    if not run_dir.is_dir() or any(run_dir.rglob("*.ckpt")):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for folder in run_dir.parents:
        if folder == existing or not folder.is_dir() or any(folder.iterdir()):
            break
        folder.rmdir()
