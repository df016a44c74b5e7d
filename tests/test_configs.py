"""Every shipped YAML config parses (--print_config) and instantiates."""

from __future__ import annotations


import pytest
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from conftest import CONFIGS, REPO
from lightning_summ.callbacks.checkpoint import GenerationCheckpoint, GenerationEarlyStopping
from lightning_summ.commands.lightning import run_cli
from lightning_summ.data.datamodule import SummarizationDataModule
from lightning_summ.models.base import SummarizerBase
from lightning_summ.models.evaluation import SummaryEvaluationModule

# Lightning configs; the pipeline configs (pipeline-*.yaml) are parsed by tests/test_pipeline.py.
ALL_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("pipeline-"))


def test_configs_are_found():
    assert {p.name for p in ALL_CONFIGS} >= {"quickstart.yaml", "kobart.yaml", "solar-api.yaml"}


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda p: p.name)
def test_config_prints_and_instantiates(config, tmp_path, monkeypatch, capsys):
    # In-process (a subprocess per config cost ~10 s of imports each): --print_config prints and exits 0.
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_:
        run_cli(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None), capsys.readouterr().err[-3000:]
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith(("lightning_summ.models.", "lightning_summ.api."))

    monkeypatch.chdir(tmp_path)
    cli = run_cli(["--config", str(config)], run=False)  # builds model, data, trainer; loads no weights yet
    assert isinstance(cli.model, SummaryEvaluationModule)
    assert isinstance(cli.datamodule, SummarizationDataModule) and cli.datamodule.processor is cli.model.processor
    if isinstance(cli.model, SummarizerBase):  # trained models (the API summarizer has no network)
        assert cli.model.model is None and cli.model.generation.max_new_tokens > 0
    # ROUGE exists only on epochs that generate: whatever watches it must be one of our callbacks.
    rouge_watchers = [cb for cb in cli.trainer.callbacks
                      if isinstance(cb, (ModelCheckpoint, EarlyStopping)) and cb.monitor == "val/rouge_mean"]
    assert all(isinstance(cb, (GenerationCheckpoint, GenerationEarlyStopping)) for cb in rouge_watchers), rouge_watchers
    if config.name != "solar-api.yaml":  # the API model is not trained
        assert isinstance(cli.trainer.checkpoint_callback, GenerationCheckpoint)
        assert cli.trainer.checkpoint_callback.monitor == "val/rouge_mean"
