"""The ``lightning_summ`` command: one verb per module of this package, above a small runner.

The package (models, data, io, ...) never imports ``lightning_summ.commands``; the commands import
the package. ``lightning_summ --help`` imports nothing but this file, so it is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Optional

from lightning_summ.errors import UserError

PROG = "lightning_summ"

# verb -> (module of this package that runs it, one line for --help)
VERBS = {
    "fit": ("lightning", "train a model (checkpoints and TensorBoard logs under logs/)"),
    "validate": ("lightning", "loss and ROUGE of a model on data.val_path"),
    "test": ("lightning", "loss and ROUGE of a model on data.test_path"),
    "predict": ("lightning", "write submission.csv + candidates.jsonl for data.predict_path"),
    "export": ("lightning", "save a checkpoint as a transformers model or a peft adapter directory"),
    "cv": ("cv", "k-fold cross-validation of a config: out-of-fold predictions, mean ± std ROUGE"),
    "tune": ("tune", "hyper-parameter search with Optuna (TPE, median pruning, shared RDB storage): best.yaml"),
    "ensemble": ("ensemble", "combine candidates.jsonl files of several models (MBR or weighted voting)"),
    "score": ("score", "ROUGE of a submission CSV against a file with references"),
    "pipeline": ("pipeline", "members (fit or k folds), ensemble and a report (report.md/json), resumable"),
    "serve": ("serve", "serve a model behind an OpenAI-compatible /v1/chat/completions"),
}


def help_text() -> str:
    width = max(map(len, VERBS))
    lines = [f"usage: {PROG} <command> [options]", "",
             "Fine-tune and run abstractive summarizers with PyTorch Lightning.", "", "commands:"]
    lines += [f"  {verb:<{width}}  {summary}" for verb, (_, summary) in VERBS.items()]
    lines += ["", f"'{PROG} <command> --help' lists a command's options; fit/validate/test/predict/export",
              "take a --config YAML whose every key is also a --flag."]
    return "\n".join(lines)


def fail(message: str) -> NoReturn:
    """The one way a user mistake ends: one line on stderr, exit code 2."""
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"{PROG}: error: {one_line}", file=sys.stderr, flush=True)
    sys.exit(2)


def run(args: list[str]) -> None:
    """Run the verb ``args[0]`` with the rest of ``args``; errors propagate (see :func:`main`)."""
    verb = args[0]
    if verb not in VERBS:
        raise UserError(f"unknown command '{verb}' (choose from: {', '.join(VERBS)}; see {PROG} --help)")
    module = importlib.import_module(f"{__name__}.{VERBS[verb][0]}")
    if VERBS[verb][0] == "lightning":
        module.run_cli(args)
    else:
        module.main(args[1:])


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: ``lightning_summ <command> [options]`` (``argv`` defaults to ``sys.argv[1:]``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(help_text())
        return
    if args[0] == "--version":
        from lightning_summ import __version__

        print(f"{PROG} {__version__}")
        return
    try:
        run(args)
    # UserError: our one error type. ArgumentError: a jsonargparse/argparse parse or validation error
    # (the parsers are built with exit_on_error=False). FileExistsError: an output that must be new.
    except (UserError, argparse.ArgumentError, FileExistsError) as e:
        fail(str(e))
