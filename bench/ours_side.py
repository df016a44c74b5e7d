"""lightning_summ's side of ``speed_vs_hf.py``: the real CLI (``fit`` / ``predict``) with ``SpeedMonitor``.

Every run is a ``lightning_summ`` command line built from a shipped config plus overrides for data
paths, run length and forced generation length, executed in-process through ``run_cli``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import REPO, peak_gb, reset_peak


def _speed_args(out: Path, warmup: int) -> list[str]:
    # default_root_dir: without a logger, Lightning's config saver writes config.yaml there (else into the cwd).
    return ["--trainer.enable_progress_bar=false", "--trainer.logger=false", f"--trainer.default_root_dir={out.parent}",
            "--trainer.enable_checkpointing=false",
            "--trainer.callbacks=[]", "--trainer.callbacks+=lightning_summ.callbacks.SpeedMonitor",
            f"--trainer.callbacks.warmup_steps={warmup}", f"--trainer.callbacks.output_path={out}",
            "--trainer.callbacks.per_batch=true", "--data.num_workers=0"]


def _run(argv: list[str], out: Path, section: str) -> dict:
    from lightning_summ.commands.lightning import run_cli

    base = reset_peak()
    start = time.perf_counter()
    run_cli(argv)
    wall = time.perf_counter() - start
    everything = json.loads(out.read_text())
    result = everything[section]
    if section == "train":  # whether the timed training was sane (NaN losses once went unnoticed here)
        result["train_loss"] = everything["train_loss"]
    result["peak_mem_gb"] = peak_gb(base)
    result["command_wall_s"] = round(wall, 1)  # model loading included
    return result


def _generation(new_tokens: int, num_beams: int, static_cache: bool) -> list[str]:
    return [f"--model.init_args.generation.max_new_tokens={new_tokens}",
            f"--model.init_args.generation.min_new_tokens={new_tokens}",  # forced length: equal work on both sides
            f"--model.init_args.generation.num_beams={num_beams}", "--model.init_args.generation.no_repeat_ngram_size=0",
            "--model.init_args.generation.repetition_penalty=1.0",
            f"--model.init_args.generation.static_cache={str(static_cache).lower()}",
            "--model.init_args.evaluation.rouge_tokenizer=whitespace"]  # kiwipiepy's model does not travel to the GPU


def seq2seq(args, mode: str, batch_size: int, static_cache: bool = False, options: tuple[str, ...] = ()) -> dict:
    """KoBART-architecture fine-tuning (``fit``) or beam-4 generation (``predict``) of ``args.model_dir``;
    ``options``: more command-line overrides (the speed options under test)."""
    out = Path(args.scratch) / f"ours-{mode}-{time.time_ns()}.json"
    common = ["--config", str(REPO / "configs/kobart.yaml"), f"--model.init_args.pretrained={args.model_dir}",
              f"--data.train_path={args.data}", f"--data.val_path={args.data}", f"--data.predict_path={args.data}",
              f"--data.batch_size={args.batch_size}", f"--data.eval_batch_size={batch_size}",
              *_generation(args.new_tokens, 4, static_cache), *_speed_args(out, args.warmup), *options]
    if mode == "train":
        return _run(["fit", *common, f"--trainer.max_steps={args.steps + args.warmup}", "--trainer.limit_val_batches=0",
                     "--trainer.max_epochs=1000"], out, "train")
    result = _run(["predict", *common, f"--submission.output_path={out.with_suffix('.csv')}"], out, "predict")
    result["predictions"] = str(out.with_suffix(".csv"))
    return result


def causal(args, config: str, mode: str, batch_size: int, num_beams: int = 1, static_cache: bool = False,
           accumulate: int = 1, options: tuple[str, ...] = ()) -> dict:
    """Qwen3-4B-architecture LoRA/QLoRA training (``fit``) or generation (``predict``) with a shipped config;
    ``accumulate`` is the config's gradient accumulation (warm-up is counted in optimizer steps);
    ``options``: more command-line overrides (the speed options under test)."""
    out = Path(args.scratch) / f"ours-causal-{mode}-{time.time_ns()}.json"
    common = ["--config", str(REPO / config), f"--model.init_args.pretrained={args.model_dir}",
              f"--data.train_path={args.data}", f"--data.val_path={args.data}",
              f"--data.predict_path={args.gen_data}", *_generation(args.new_tokens, num_beams, static_cache), *options]
    if mode == "train":
        return _run(["fit", *common, f"--data.batch_size={batch_size}", *_speed_args(out, args.warmup * accumulate),
                     f"--trainer.max_steps={args.steps + args.warmup}", "--trainer.limit_val_batches=0",
                     "--trainer.max_epochs=1000"], out, "train")
    result = _run(["predict", *common, f"--data.eval_batch_size={batch_size}", *_speed_args(out, 0),
                   f"--submission.output_path={out.with_suffix('.csv')}"], out, "predict")
    result["predictions"] = str(out.with_suffix(".csv"))
    return result
