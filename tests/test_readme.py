"""Every command of the README runs as written on a fresh copy of the repository.

The commands are taken from the README's ``bash`` blocks (continuation lines joined, comments
dropped, ``&&`` chains split) and run in order, in-process, in a copy of the repository without its
``logs/``. ``<the path printed by fit>`` is the checkpoint the README's ``fit`` printed. Commands on
``configs/quickstart.yaml`` get the tiny-model overrides of the other tests appended (``fit`` and
``cv`` and ``tune`` also a one-epoch run), so the whole README takes seconds; everything else runs unchanged.
Skipped, with the reason the test reports (:func:`why_skipped`):

* ``pip install ...``: installs from the network; ``.ci/run`` does exactly this on a clean clone;
* ``python3 -m pytest``: this suite;
* ``tensorboard ...``: a long-running viewer;  ``export VAR=...``: shell set-up for the API;
* commands on the LLM and KoBART configs: weights from the Hugging Face hub, and a GPU for the LLMs
  (``tests/test_configs.py`` and ``tests/test_cli_causal.py`` run these configs on tiny models);
* ``configs/solar-api.yaml`` without ``dry_run``: a network API and its key (``tests/test_api.py``
  runs the same code against a local server);
* ``serve``: a server that runs until stopped (``tests/test_api.py`` starts it on loopback).
"""

from __future__ import annotations

import glob
import re
import shlex
import shutil
from typing import Optional


from conftest import REPO, TINY
from lightning_summ.commands import main

README = REPO / "README.md"
CKPT = "{CKPT}"
ONE_EPOCH = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
             "--model.init_args.evaluation.generate_every_n_epochs=1"]


def readme_commands(text: str) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = block.replace("<the path printed by fit>", CKPT).replace("<ckpt>", CKPT)
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#(\s.*)?$", "", line)  # a comment: '#' then a space or the line's end
            words = shlex.split(line)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1:]
    return commands


def why_skipped(words: list[str]) -> Optional[str]:
    line = " ".join(words)
    if words[0] != "lightning_summ":
        return {"pip": "installs from the network (.ci/run does it)", "python3": "the test suite itself",
                "tensorboard": "a long-running viewer", "export": "shell set-up for the API"}[words[0]]
    if words[1] == "serve":
        return "a server that runs until stopped (tests/test_api.py starts it)"
    if words[1] == "pipeline":
        return "the whole pipeline (a minute): tests/test_pipeline_quickstart.py runs these commands"
    config = words[words.index("--config") + 1] if "--config" in words else None
    if config == "configs/solar-api.yaml" and "dry_run" not in line:
        return "a network API and its key (tests/test_api.py runs it against a local server)"
    if config not in (None, "configs/quickstart.yaml", "configs/solar-api.yaml"):
        return "hub weights (and a GPU for the LLMs); tests/test_configs.py and test_cli_causal.py cover the configs"
    return None


def expand(words: list[str], ckpt: Optional[str]) -> list[str]:
    """What the shell would pass: globs expanded (sorted, as bash does), the checkpoint filled in."""
    out = []
    for word in words[1:]:
        if CKPT in word:
            assert ckpt, "a command names the checkpoint before the README's fit printed one"
            word = word.replace(CKPT, ckpt)
        out.extend(sorted(glob.glob(word)) or [word] if "*" in word else [word])
    if "configs/quickstart.yaml" in out:
        out += TINY + (ONE_EPOCH if out[0] in ("fit", "cv", "tune") else [])
    return out


def test_readme_extraction_finds_the_commands():
    commands = readme_commands(README.read_text(encoding="utf-8"))
    verbs = {c[1] for c in commands if c[0] == "lightning_summ" and len(c) > 1}
    assert {"fit", "predict", "test", "export", "score", "cv", "ensemble", "serve", "--help", "validate"} <= verbs
    assert readme_commands("```bash\nx a \\\n  b  # note\n# only a comment\np && q '#1 a'\n```") == [
        ["x", "a", "b"], ["p"], ["q", "#1 a"]]


def test_every_readme_command_runs_as_written(tmp_path, monkeypatch, capsys):
    clone = tmp_path / "clone"
    shutil.copytree(REPO, clone, ignore=shutil.ignore_patterns(".git", "logs", "__pycache__", "*.egg-info", ".benchmarks"))
    (clone / "logs").mkdir()
    monkeypatch.chdir(clone)
    before = {p for p in clone.rglob("*") if "logs" not in p.relative_to(clone).parts}
    ckpt, ran, skipped = None, [], []
    for words in readme_commands(README.read_text(encoding="utf-8")):
        if reason := why_skipped(words):
            skipped.append((" ".join(words[:4]), reason))
            continue
        args = expand(words, ckpt)
        try:
            main(args)
        except SystemExit as e:  # --help pages exit 0; anything else is a failure of the README
            assert e.code == 0, f"`lightning_summ {' '.join(args)}` exited {e.code}: {capsys.readouterr().err[-2000:]}"
        out = capsys.readouterr().out
        if args[0] == "fit":
            ckpt = out.split("Best checkpoint: ", 1)[1].split("\n", 1)[0]
        ran.append(" ".join(words[:2]))
    assert ran.count("lightning_summ predict") >= 4 and "lightning_summ cv" in ran and "lightning_summ ensemble" in ran
    assert len(skipped) >= 5, skipped
    assert (clone / "logs/quickstart/ensemble.report.json").is_file() and (clone / "logs/quickstart/export").is_dir()
    # Everything the README's commands wrote is under logs/ (git-ignored), nothing in the checkout itself.
    assert {p for p in clone.rglob("*") if "logs" not in p.relative_to(clone).parts} == before
