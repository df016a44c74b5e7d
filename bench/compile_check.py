"""``model.compile`` against eager on the same steps: per-step training losses of one shipped config
run twice through ``lightning_summ fit`` (same seed, same batches, dropout off so that both sides
draw no random masks), once eager and once with compiled blocks.

The CPU tests compare the two under ``aot_eager`` (no generated kernels); this runs inductor's
kernels, on the GPU, and reports how far the losses drift (bf16 autocast: fused kernels round in
another order, so equality is not expected; a wrong graph shows as a diverging curve instead).

    python3 bench/compile_check.py --config configs/qwen3-4b-lora-bf16.yaml --data $D/dev.csv \\
        --tokenizer $D/tokenizer-ko-30k --steps 30 --out $OUT
    # CPU smoke test (tiny model, the aot_eager backend):
    python bench/compile_check.py --tiny --backend aot_eager --data lightning_summ/sample_data/dev.csv \\
        --tokenizer lightning_summ/assets/quickstart-tokenizer --steps 3 --out /tmp/cc
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from lightning.pytorch import Callback

import common  # noqa: F401 - before lightning_summ: puts this checkout's package first on sys.path
from causal_groups import materialize
from common import REPO
from lightning_summ.outputs import atomic_write


class LossRecorder(Callback):
    """Every training step's loss, as a float."""

    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def fit_losses(args, compile_setting: str) -> tuple[list[float], int]:
    """The run's per-step losses and how many blocks it compiled."""
    from lightning_summ.commands.lightning import run_cli

    cli = run_cli(["--config", str(REPO / args.config), f"--model.init_args.pretrained={args.model_dir}",
                   f"--model.init_args.compile={compile_setting}", "--model.init_args.lora.dropout=0.0",
                   f"--data.train_path={args.data}", f"--data.val_path={args.data}", "--data.num_workers=0",
                   f"--trainer.max_steps={args.steps}", "--trainer.max_epochs=1000", "--trainer.limit_val_batches=0",
                   "--trainer.accumulate_grad_batches=1", "--trainer.logger=false", "--trainer.enable_checkpointing=false",
                   "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]", "--seed_everything=0",
                   f"--trainer.default_root_dir={args.out}", "--model.init_args.evaluation.rouge_tokenizer=whitespace"],
                  run=False)
    recorder = LossRecorder()
    cli.trainer.callbacks.append(recorder)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return recorder.losses, len(cli.model._compiled_blocks or [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/qwen3-4b-lora-bf16.yaml", help="a shipped LoRA/QLoRA config")
    parser.add_argument("--data", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--model_dir", default="/tmp/compile_check/random-model")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--backend", default="true", help="model.compile of the compiled run (true = inductor)")
    parser.add_argument("--tiny", action="store_true", help="a tiny Qwen3 (CPU smoke test)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    init = yaml.safe_load((REPO / args.config).read_text())["model"]["init_args"]
    if not init.get("lora"):  # both runs switch LoRA dropout off, so that they draw no random masks
        parser.error(f"--config {args.config}: not a LoRA/QLoRA config (model.init_args.lora is not set)")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    materialize(args)  # the random-weight Qwen3 (real shapes, or tiny) both runs load
    (eager, _), (compiled, blocks) = fit_losses(args, "false"), fit_losses(args, args.backend)
    diffs = [abs(a - b) for a, b in zip(eager, compiled, strict=True)]
    result = {"config": args.config, "backend": args.backend, "steps": args.steps, "compiled_blocks": blocks,
              "eager": eager, "compiled": compiled,
              "max_abs_diff": max(diffs), "max_rel_diff": max(d / abs(a) for d, a in zip(diffs, eager) if a),
              "last_eager": eager[-1], "last_compiled": compiled[-1]}
    with atomic_write(Path(args.out) / "compile_check.json") as f:
        json.dump(result, f, indent=2)
    print("| step | eager loss | compiled loss | abs diff |\n|---|---|---|---|")
    for step, (a, b) in enumerate(zip(eager, compiled), 1):
        print(f"| {step} | {a:.5f} | {b:.5f} | {abs(a - b):.2e} |")
    print(f"max abs diff {result['max_abs_diff']:.2e}, max relative diff {result['max_rel_diff']:.2e}")


if __name__ == "__main__":
    main()
