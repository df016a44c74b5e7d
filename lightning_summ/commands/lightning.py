"""``fit`` / ``validate`` / ``test`` / ``predict`` / ``export``: the Lightning verbs, through LightningCLI.

    lightning_summ fit --config configs/quickstart.yaml
    lightning_summ predict --config configs/quickstart.yaml --ckpt_path <ckpt>
    lightning_summ export --config configs/qwen3-4b-qlora.yaml --ckpt_path <ckpt> --output_dir logs/adapter

Every option of the model, data and Trainer is a YAML key and a ``--flag`` (``--help`` lists them,
``--print_config`` shows the resolved config).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Iterator, Optional, Union

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.cli import LightningCLI

from lightning_summ.callbacks.checkpoint import AtomicCheckpointIO, best_checkpoint_callback
from lightning_summ.callbacks.progress import default_progress_bar
from lightning_summ.callbacks.submission_writer import SubmissionWriter
from lightning_summ.commands._preflight import check_checkpoint_file, discard_new_run_directory, preflight
from lightning_summ.console import say
from lightning_summ.data.datamodule import SummarizationDataModule
from lightning_summ.errors import ConfigError, UserError
from lightning_summ.models.evaluation import SummaryEvaluationModule
from lightning_summ.precision import resolve_precision


def _as_list(value) -> list:
    """A Trainer argument that takes one object or a list of them, as a list."""
    return list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]


class SummarizationTrainer(Trainer):
    """Lightning's ``Trainer`` with other defaults.

    Args:
        precision: ``auto`` (default) picks ``bf16-mixed`` on GPUs with bf16, ``16-mixed`` on older
            GPUs and ``32-true`` on CPU; any Lightning precision string is accepted as well.
        use_distributed_sampler: off, because the DataModule shards its length-bucketed batches
            across processes itself (a DistributedSampler would undo the bucketing).
        callbacks: Lightning's callbacks. Unless one of them is a progress bar (or
            ``enable_progress_bar`` is false), a ``ThrottledRichProgressBar`` (or, without rich,
            ``ThrottledProgressBar``) is added; name ``lightning.pytorch.callbacks.RichProgressBar``
            to get Lightning's own, which shows no training loss (it is logged without ``prog_bar``,
            whose values Lightning reads after every batch: a wait for the GPU per step).

    Checkpoints are written atomically (``AtomicCheckpointIO``) unless ``plugins`` names another writer.
    The default progress bar is Lightning's (rich, else tqdm) reading the metrics at most twice a
    second (``callbacks.progress``), since each read waits for the GPU (one synchronization).
    On CPU, torch uses ``cpu_threads()`` threads unless ``OMP_NUM_THREADS`` is set.
    """

    def __init__(self, precision: Optional[Union[str, int]] = "auto", use_distributed_sampler: bool = False,
                 callbacks: Optional[Union[list[Callback], Callback]] = None, **kwargs):
        choose_cpu_threads(kwargs.get("accelerator", "auto"))
        plugins = _as_list(kwargs.pop("plugins", None))
        if not any(hasattr(p, "save_checkpoint") for p in plugins):
            plugins.append(AtomicCheckpointIO())
        callbacks = _as_list(callbacks)
        if kwargs.get("enable_progress_bar", True) is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(default_progress_bar())
        super().__init__(callbacks=callbacks, precision=resolve_precision(precision, kwargs.get("accelerator", "auto")),
                         use_distributed_sampler=use_distributed_sampler, plugins=plugins, **kwargs)

    def export(self, model: SummaryEvaluationModule, datamodule: SummarizationDataModule, ckpt_path: str, output_dir: str,
               merge: bool = False) -> None:
        """Save a checkpoint in the format transformers/peft load: the whole model, or the LoRA adapter.

        Args:
            ckpt_path: checkpoint written by ``fit``.
            output_dir: new directory to create.
            merge: fold LoRA into the base weights and save a plain model (base must not be quantized).
        """
        from lightning_summ.export import export_checkpoint

        export_checkpoint(model, datamodule, ckpt_path, output_dir, merge, device=self.strategy.root_device,
                          precision=str(self.precision))


def cpu_threads() -> int:
    """min(4, the CPUs this process may run on): torch's default, one thread per logical core,
    thrashes a machine that is busy with anything else (the quickstart took 117.6 s with the default
    and 38.6 s with one thread on a loaded 2-core machine), and small models gain little beyond 4."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, available))


def choose_cpu_threads(accelerator) -> None:
    """Set torch's intra-op threads for a CPU run, unless the user chose them (``OMP_NUM_THREADS``)."""
    import torch

    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cpu_threads())


class SummarizationCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "export": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser) -> None:
        # The writer is always attached: `predict` writes a submission, other stages ignore it.
        parser.add_lightning_class_args(SubmissionWriter, "submission")
        # The model builds the processor from its settings; the DataModule encodes with the same object.
        parser.link_arguments("model", "data.processor", compute_fn=lambda model: model.processor,
                              apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")
        if subcommand == "fit":
            resolve_resume(self.config.fit)
        if subcommand in ("fit", "validate", "test", "predict"):
            check_checkpoint_file(self.config[subcommand].get("ckpt_path"))

    def instantiate_classes(self) -> None:
        # jsonargparse wraps an error raised while it builds a config class (a settings check) into a
        # multi-line ValueError; the user's mistake is the UserError at the end of that chain.
        try:
            super().instantiate_classes()
        except ValueError as e:
            cause = user_error_behind(e)
            if cause is None:
                raise
            raise cause from None

    def _parse_ckpt_path(self) -> None:
        # Lightning lets a checkpoint's hparams override the model config, command line included; we
        # never do, so that e.g. ``--model.init_args.generation.num_beams 8`` at predict time is honoured.
        # What must match the checkpoint (vocabulary, tags, prompt, lengths) is verified on load instead.
        return

    def _run_subcommand(self, subcommand: str) -> None:
        """Lightning's: ``before_<subcommand>`` (our preflight, below), the Trainer's method, ``after_...``.
        A run refused on the user's input removes the run directory it had created."""
        try:
            super()._run_subcommand(subcommand)
        except UserError:
            discard_new_run_directory(self)
            raise

    def before_fit(self) -> None:
        preflight(self, "fit")

    def before_validate(self) -> None:
        preflight(self, "validate")

    def before_test(self) -> None:
        preflight(self, "test")

    def before_predict(self) -> None:
        preflight(self, "predict")

    def before_export(self) -> None:
        preflight(self, "export")

    def after_fit(self) -> None:
        ckpt = best_checkpoint_callback(self.trainer)
        if ckpt is not None and ckpt.best_model_path:
            say(f"Best checkpoint: {ckpt.best_model_path}")


RESUME_CHOICES = ("last", "auto")


def resolve_resume(config) -> None:
    """``fit --ckpt_path last`` / ``auto``: continue the experiment's latest run in place.

    The run is the highest ``version_N`` (or the logger's ``version``, if set) under the logger's
    ``save_dir/name`` that holds ``checkpoints/last.ckpt``; ``ckpt_path`` becomes that file and the
    logger's version that run's, so TensorBoard, ``config.yaml`` and the checkpoint callbacks (their
    best-model record included) continue in the same directory. ``last`` with nothing to resume is
    a user error (exit 2); ``auto`` then starts a new run. Without ``--ckpt_path`` a fit always starts
    a new run.
    """
    choice = config.get("ckpt_path")
    if choice not in RESUME_CHOICES:
        return
    logger = config.trainer.get("logger")
    init = logger.get("init_args") if hasattr(logger, "get") else None
    if init is None or init.get("save_dir") is None:
        raise ConfigError(f"--ckpt_path {choice} looks for <save_dir>/<name>/version_N/checkpoints/last.ckpt, "
                          "but trainer.logger is not a logger with a save_dir (e.g. TensorBoardLogger)")
    experiment = Path(init.save_dir) / (init.get("name") or "")
    found = latest_resumable_run(experiment, init.get("version"))
    if found is None:
        if choice == "auto":
            say(f"Nothing to resume under {experiment}: starting a new run")
            config.ckpt_path = None
            return
        where = experiment / (version_dir_name(init.get("version")) or "version_*")
        raise ConfigError(f"--ckpt_path last: nothing to resume, no {where}/checkpoints/last.ckpt (omit --ckpt_path "
                          "to start a new run, or use --ckpt_path auto to resume only when there is one)")
    run_dir, ckpt = found
    init.version = run_dir.name
    config.ckpt_path = str(ckpt)
    say(f"Resuming {run_dir} from {ckpt}")


def version_dir_name(version) -> Optional[str]:
    """The directory TensorBoardLogger/CSVLogger use for ``version`` (None: the next free one)."""
    if version is None:
        return None
    return version if isinstance(version, str) else f"version_{version}"


def latest_resumable_run(experiment: Path, version=None) -> Optional[tuple[Path, Path]]:
    """(run directory, its ``last.ckpt``) of the newest run of ``experiment`` that can be resumed."""
    if version is not None:
        runs = [experiment / version_dir_name(version)]
    else:
        numbered = [(int(m.group(1)), d) for d in experiment.glob("version_*")
                    if (m := re.fullmatch(r"version_(\d+)", d.name)) and d.is_dir()]
        runs = [d for _, d in sorted(numbered, reverse=True)]
    for run_dir in runs:
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if ckpt.is_file():
            return run_dir, ckpt
    return None


def user_error_behind(error: Optional[BaseException]) -> Optional[UserError]:
    """The ``UserError`` that ``error`` wraps (through ``raise ... from``), if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


@contextlib.contextmanager
def quiet_lightning(subcommand: Optional[str]) -> Iterator[None]:
    """Silence, for one run, the messages of Lightning and torch that a user cannot act on."""
    tip = _DropMessages("💡 Tip: For seamless cloud logging")  # an advertisement, printed by every Trainer
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero_log.addFilter(tip)
    try:
        with warnings.catch_warnings():
            # `main` always passes the arguments it parsed from sys.argv: the warning guards against a
            # mix-up of the two that cannot happen here (and repeats once per cv fold and stage).
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            # Lightning's own pytree helper still builds torch's deprecated LeafSpec.
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            # Our SortedBatchSampler yields every index exactly once (tests/data/test_batching.py).
            warnings.filterwarnings("ignore", message="You are using a custom batch sampler `SortedBatchSampler`")
            if subcommand != "fit":
                # validate/test/predict/export use only a checkpoint's weights; the callbacks' state
                # (ModelCheckpoint's best scores, which these warnings are about) matters to ``fit`` alone.
                warnings.filterwarnings("ignore", message="The dirpath has changed from")
                warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks")
            yield
    finally:
        rank_zero_log.removeFilter(tip)


def run_cli(args: Optional[list[str]] = None, run: bool = True) -> SummarizationCLI:
    """Run (or, with ``run=False``, only build) the LightningCLI on ``args`` (default: ``sys.argv``)."""
    args = sys.argv[1:] if args is None else list(args)
    with quiet_lightning(args[0] if run and args else None):
        return SummarizationCLI(
            SummaryEvaluationModule, SummarizationDataModule, subclass_mode_model=True,
            trainer_class=SummarizationTrainer,
            trainer_defaults={"logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                         "init_args": {"save_dir": "logs", "name": "lightning_summ"}}},
            save_config_kwargs={"overwrite": True}, args=args, run=run,
            # Parse errors are raised, not printed with the usage: `main` prints them as one line.
            parser_kwargs={"prog": "lightning_summ", "exit_on_error": False},
        )
