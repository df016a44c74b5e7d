"""End-to-end training pinned to numbers: the quickstart's loss curve (as torchtune pins its recipes'
losses, with a tolerance), and a LoRA fit resumed from its adapter-only checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from conftest import CONFIGS
from test_cli_causal import tiny_pretrained


def scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


# The tiny quickstart (TINY in conftest: the hand-written sample set), seed 42, 2 epochs x 3 batches,
# CPU fp32. If a change moves these, it changed what is trained (data order, encoding, loss, optimizer,
# schedule): say why. The tolerance absorbs float differences between CPUs, not changes of behaviour
# (steps differ by >= 1e-2). Re-pinned for issue 13's quickstart recipe: its 1,000-token synthetic
# tokenizer, batch 32 drawn at random (pool_factor 1), no label smoothing, dropout 0.05.
PINNED_TRAIN = [6.92669, 6.90386, 6.88208, 6.85408, 6.82397, 6.80951]  # steps 0..5
PINNED_VAL = [6.85725, 6.81877]  # after epochs 0 and 1


def test_quickstart_loss_curve_is_pinned(cli_run):
    cli = cli_run("fit", "--trainer.max_epochs=2", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2",
                  "--trainer.log_every_n_steps=1")
    log_dir = Path(cli.trainer.log_dir)
    train = scalars(log_dir, "train/loss")
    val = scalars(log_dir, "val/loss")
    assert [step for step, _ in train] == list(range(6))
    assert [v for _, v in train] == pytest.approx(PINNED_TRAIN, abs=2e-4)
    assert [v for _, v in val] == pytest.approx(PINNED_VAL, abs=2e-4)


class StopAfterFirstEpoch(Callback):
    """Ends a fit after its first epoch (checkpoints written): the schedule is still planned for all epochs."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def test_lora_fit_resumes_from_its_adapter_only_checkpoint(tmp_path, monkeypatch):
    """An interrupted LoRA fit resumed from its adapter-only ``last.ckpt`` ends with the same adapter
    weights as the same fit run in one go (no dropout: the runs share no random state to restore)."""
    from lightning_summ.commands.lightning import run_cli

    model_dir = tiny_pretrained(tmp_path / "model", "qwen3-4b.json", chat=True)
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(CONFIGS / "qwen3-4b-lora-bf16.yaml"), f"--model.init_args.pretrained={model_dir}",
              "--model.init_args.max_length=320", "--model.init_args.lora.dropout=0.0",
              "--model.init_args.generation.max_new_tokens=4", "--model.init_args.evaluation.generate_limit=4",
              "--data.train_path=pkg://sample_data/train.csv", "--data.val_path=pkg://sample_data/dev.csv",
              "--data.batch_size=4", "--data.num_workers=0", "--trainer.limit_train_batches=4",
              "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0"]

    def adapters(cli) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in cli.model.named_parameters() if p.requires_grad}

    straight = run_cli(["fit", *common, "--trainer.max_epochs=2", "--trainer.logger.init_args.version=straight"])
    first = run_cli(["fit", *common, "--trainer.max_epochs=2", "--trainer.logger.init_args.version=first",
                     "--trainer.callbacks+=test_training_curve.StopAfterFirstEpoch"])
    assert first.trainer.global_step == 2
    last = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"  # ResumeCheckpoint's, written at train end
    saved = torch.load(last, weights_only=True)
    assert saved["state_dict"] and all("lora_" in k or "trainable_tokens" in k for k in saved["state_dict"])
    resumed = run_cli(["fit", *common, "--trainer.max_epochs=2", f"--ckpt_path={last}",
                       "--trainer.logger.init_args.version=resumed"])
    assert resumed.trainer.global_step == straight.trainer.global_step == 4  # 2 epochs x 4 batches / accumulate 2
    ours, reference = adapters(resumed), adapters(straight)
    assert ours.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-5, atol=1e-6, msg=name)
