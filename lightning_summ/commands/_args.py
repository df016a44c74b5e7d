"""What the non-Lightning verbs share: a typed parser whose errors are raised (``main`` prints
them as one line), and the split of a command line into a verb's own options and the options it
hands on to LightningCLI."""

from __future__ import annotations

import argparse

from jsonargparse import ArgumentParser, DefaultHelpFormatter


class _HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's help, with the verb's docstring shown as written (its examples stay aligned)."""


def verb_parser(verb: str, description: str) -> ArgumentParser:
    return ArgumentParser(prog=f"lightning_summ {verb}", description=description, exit_on_error=False,
                          formatter_class=_HelpFormatter)


def split_options(args: list[str], own: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``(own options with their values, the rest)``. ``own`` holds exact names (``--ckpt_path``)
    and prefixes ending in a dot (``--cv.``); a value is the option's ``=...`` or the next argument
    unless that is an option itself."""
    mine, rest, i = [], [], 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if any(name == o or (o.endswith(".") and name.startswith(o)) for o in own):
            mine.append(arg)
            if "=" not in arg and name.startswith("--") and i + 1 < len(args) and not args[i + 1].startswith("--"):
                mine.append(args[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return mine, rest
