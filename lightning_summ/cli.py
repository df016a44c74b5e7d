"""``lightning_summ``: fit / validate / test / predict through LightningCLI, plus ``score``.

    lightning_summ fit --config configs/quickstart.yaml
    lightning_summ predict --config configs/quickstart.yaml --ckpt_path <ckpt>
    lightning_summ export --config configs/qwen3-4b-qlora.yaml --ckpt_path <ckpt> --output_dir adapter/
    lightning_summ score --predictions submission.csv --references dev.csv
    lightning_summ cv --config configs/kobart.yaml --cv.num_folds 5 [--cv.predict true]
    lightning_summ ensemble --inputs a/candidates.jsonl b/candidates.jsonl --method mbr --output ens.csv
    lightning_summ serve --config configs/quickstart.yaml --ckpt_path <ckpt> [--serve.port 8000]

Every option of the model, data and Trainer is a YAML key and a ``--flag`` (``--help`` lists them,
``--print_config`` shows the resolved config). Bad input ends with one ``error:`` line and exit 2.
"""

from __future__ import annotations

import json
import sys
from typing import Literal, Optional, Union

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI

from lightning_summ.api.client import ApiError
from lightning_summ.callbacks.submission_writer import SubmissionWriter
from lightning_summ.data.datamodule import SummarizationDataModule
from lightning_summ.errors import UserError
from lightning_summ.models.evaluation import SummaryEvaluationModule
from lightning_summ.precision import PrecisionError, resolve_precision

USER_ERRORS = (UserError, PrecisionError, ApiError, FileExistsError)


def user_error_behind(error: Optional[BaseException]) -> Optional[BaseException]:
    """The user error (one of ``USER_ERRORS``) that ``error`` wraps, if any. jsonargparse turns an
    exception raised while it instantiates a class of the config (a settings check) into a multi-line
    ``ValueError`` ("Does not validate against any of the Union subtypes ..."), chained with ``from``."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, USER_ERRORS):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None


class SummarizationTrainer(Trainer):
    """Lightning's ``Trainer`` with two different defaults.

    Args:
        precision: ``auto`` (default) picks ``bf16-mixed`` on GPUs with bf16, ``16-mixed`` on older
            GPUs and ``32-true`` on CPU; any Lightning precision string is accepted as well.
        use_distributed_sampler: off, because the DataModule shards its length-bucketed batches
            across processes itself (a DistributedSampler would undo the bucketing).
    """

    def __init__(self, precision: Optional[Union[str, int]] = "auto", use_distributed_sampler: bool = False, **kwargs):
        super().__init__(precision=resolve_precision(precision, kwargs.get("accelerator", "auto")),
                         use_distributed_sampler=use_distributed_sampler, **kwargs)

    def export(self, model: SummaryEvaluationModule, datamodule: SummarizationDataModule, ckpt_path: str, output_dir: str,
               merge: bool = False) -> None:
        """Save a checkpoint in the format transformers/peft load: the whole model, or the LoRA adapter.

        Args:
            ckpt_path: checkpoint written by ``fit``.
            output_dir: new directory to create.
            merge: fold LoRA into the base weights and save a plain model (base must not be quantized).
        """
        from lightning_summ.export import export_checkpoint

        export_checkpoint(model, datamodule, ckpt_path, output_dir, merge, precision=str(self.precision))


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

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as e:
            user_error = user_error_behind(e)
            if user_error is None:
                raise
            raise user_error from None  # its own one line, not jsonargparse's wrapping

    def _parse_ckpt_path(self) -> None:
        # Lightning lets a checkpoint's hparams override the model config, command line included;
        # we take them only when no model is configured (``predict --ckpt_path X`` alone), so that
        # e.g. ``--model.init_args.generation.num_beams 8`` at predict time is honoured.
        if self.config.get("subcommand") and self.config[self.config.subcommand].get("model") is None:
            super()._parse_ckpt_path()

    def after_fit(self) -> None:
        ckpt = self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and ckpt is not None and ckpt.best_model_path:
            print(f"Best checkpoint: {ckpt.best_model_path}", flush=True)


def run_cli(args: Optional[list[str]] = None, run: bool = True) -> SummarizationCLI:
    return SummarizationCLI(
        SummaryEvaluationModule, SummarizationDataModule, subclass_mode_model=True,
        trainer_class=SummarizationTrainer,
        trainer_defaults={"logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                     "init_args": {"save_dir": "logs", "name": "lightning_summ"}}},
        save_config_kwargs={"overwrite": True}, args=args, run=run,
    )


def score(predictions: str, references: str, tokenizer: Literal["morpheme", "whitespace", "char"] = "morpheme",
          multi_ref: Literal["mean", "max"] = "mean") -> dict:
    """Score a submission CSV (``fname,summary``) against a file with references.

    Args:
        predictions: CSV with ``fname`` and ``summary`` columns.
        references: CSV/JSONL with ``fname`` and ``summary`` (or ``summary1``..``summaryN``).
        tokenizer: ROUGE tokens: ``morpheme`` (Korean), ``whitespace`` or ``char``.
        multi_ref: several references are combined by ``mean`` (competition) or ``max``.
    """
    from lightning_summ.metrics.rouge import rouge_from_files

    result = rouge_from_files(predictions, references, tokenizer=tokenizer, multi_ref=multi_ref)
    print(f"{'metric':<12}{'value':>10}")
    for key in ("r1", "r2", "rl", "rouge_mean", "rouge_sum"):
        print(f"{key:<12}{result[key]:>10.4f}")
    print(json.dumps(result))
    return result


def main(argv: Optional[list[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["serve"]:
            from lightning_summ.api.server import main as serve_main

            serve_main(args[1:])
        elif args[:1] == ["ensemble"]:
            from lightning_summ.ensemble import main as ensemble_main

            ensemble_main(args[1:])
        elif args[:1] == ["cv"]:
            from lightning_summ.cv import main as cv_main

            cv_main(args[1:])
        elif args[:1] == ["score"]:
            from jsonargparse import ArgumentParser

            parser = ArgumentParser(prog="lightning_summ score", description=score.__doc__)
            parser.add_function_arguments(score, as_positional=False)
            score(**parser.parse_args(args[1:]).as_dict())
        else:
            run_cli(argv)  # None: LightningCLI reads sys.argv itself
    except USER_ERRORS as e:
        print(f"lightning_summ: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
