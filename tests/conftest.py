"""Shared test fixtures: everything runs offline on tiny models and the package's own sample data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
QUICKSTART = CONFIGS / "quickstart.yaml"
# The licensed data sits beside the checkout (../shared/data); tests using it skip when it is absent.
SHARED_DATA = REPO.parent / "shared" / "data"

# Shrinks the quickstart so an end-to-end CLI test takes seconds.
TINY = [
    "--model.init_args.model_config.d_model=32", "--model.init_args.model_config.encoder_layers=1",
    "--model.init_args.model_config.decoder_layers=1", "--model.init_args.model_config.encoder_ffn_dim=64",
    "--model.init_args.model_config.decoder_ffn_dim=64", "--model.init_args.generation.max_new_tokens=8",
]


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
