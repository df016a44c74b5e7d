"""Shared test fixtures: everything runs offline on tiny models and the package's own sample data."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
QUICKSTART = CONFIGS / "quickstart.yaml"
# The licensed data sits beside the checkout (../shared/data); tests using it skip when it is absent.
SHARED_DATA = REPO.parent / "shared" / "data"
# Runs last (see pytest_collection_modifyitems): the suite must leave the checkout as it found it.
LAST_MODULE = "test_repository_unchanged.py"

# Shrinks the quickstart so an end-to-end CLI test takes seconds: a smaller model, and the 150
# hand-written dialogues instead of the 2,400 synthetic ones the shipped quickstart trains on
# (tests/test_quickstart.py runs that one unchanged).
TINY = [
    "--model.init_args.model_config.d_model=32", "--model.init_args.model_config.encoder_layers=1",
    "--model.init_args.model_config.decoder_layers=1", "--model.init_args.model_config.encoder_ffn_dim=64",
    "--model.init_args.model_config.decoder_ffn_dim=64", "--model.init_args.generation.max_new_tokens=8",
    "--data.train_path=pkg://sample_data/train.csv", "--data.val_path=pkg://sample_data/dev.csv",
    "--data.test_path=pkg://sample_data/test.csv", "--data.predict_path=pkg://sample_data/test.csv",
]


def repository_files() -> set[str] | None:
    """``git status`` of the checkout with untracked and ignored files one by one (byte-code caches
    aside, which importing the package writes); ``None`` outside a git checkout."""
    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return {line for line in proc.stdout.splitlines() if "__pycache__/" not in line and not line.endswith(".pyc")}


def pytest_sessionstart(session):
    session.config.stash[REPOSITORY_BEFORE] = repository_files()


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.path.name == LAST_MODULE)  # stable: everything else keeps its order


REPOSITORY_BEFORE = pytest.StashKey[object]()


@pytest.fixture
def repository_before(request):
    return request.config.stash[REPOSITORY_BEFORE]


def shared_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture
def cli_run(tmp_path, monkeypatch):
    """Run ``lightning_summ`` in-process with logs under ``tmp_path``; returns the CLI object."""
    from lightning_summ.commands.lightning import run_cli

    monkeypatch.chdir(tmp_path)

    def run(*args: str, config: Path = QUICKSTART, tiny: bool = True):
        return run_cli([args[0], "--config", str(config), *(TINY if tiny else []), *args[1:]])

    return run
