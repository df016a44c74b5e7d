"""Where a training step's (or a generation batch's) time goes: ``torch.profiler`` around a window of
steps of one shipped config run through ``lightning_summ fit`` / ``predict``.

The issue behind it: every workload left the H200 idle most of the time. This answers "idle on
what?" with numbers, per profiled step: the wall time, the time the GPU spent in kernels (its busy
share of the wall), how many kernels and CUDA graphs were launched, how many host-device
synchronisations there were, and the operators that cost the most host time and GPU time.

    # KoBART at batch 32, eager and with compiled blocks (kind nvidia-h200)
    python3 bench/profile_step.py --config configs/kobart.yaml --data $D/dev.csv --tokenizer $D/tokenizer-ko-30k \\
        --out $OUT/kobart --variant eager= --variant compile=--model.init_args.compile=true
    # CPU smoke test (tiny model)
    python bench/profile_step.py --tiny --config configs/kobart.yaml --data lightning_summ/sample_data/dev.csv \\
        --tokenizer lightning_summ/assets/quickstart-tokenizer --warmup 1 --steps 2 --out /tmp/prof

``--python``: the same window under ``cProfile`` instead (no kernel figures): which Python functions
a step's host time goes to, own and cumulative, per step. cProfile sees the training loop's thread
only: on CUDA the backward runs on autograd's device thread, so its Python (compiled backward
wrappers, recomputed forwards) shows as the own time of ``run_backward``, not function by function.

"Step" is one batch (a micro-batch under gradient accumulation). Each ``--variant NAME=OVERRIDES`` is one run (overrides separated by spaces, as on the command line);
results: ``profile_step.json`` and a table on stdout (``profile_step.md``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch
import yaml
from lightning.pytorch import Callback
from torch.autograd import DeviceType

import common  # noqa: F401 - before lightning_summ: puts this checkout's package first on sys.path
from common import REPO, sync
from lightning_summ.outputs import atomic_write

# Host-side CUDA runtime/driver calls that launch work or wait for the device, by what they are.
LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")
GRAPH_LAUNCHES = ("cudaGraphLaunch", "cuGraphLaunch")
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cuStreamSynchronize")


# What torch.cuda.set_sync_debug_mode("warn") says at every synchronizing CUDA call.
SYNC_WARNING = "called a synchronizing CUDA operation"


def _short(filename: str) -> str:
    """A frame's file relative to the checkout or to site-packages: ``lightning/pytorch/core/module.py``."""
    for root in (str(REPO) + "/", "site-packages/", "dist-packages/"):
        if root in filename:
            return filename.split(root, 1)[1]
    return filename


class SyncSites:
    """Where the host waited for the GPU, by the Python lines that asked for it.

    ``torch.cuda.set_sync_debug_mode("warn")`` makes every synchronizing CUDA call warn (a blocking
    copy between host and device, ``.item()``, ``nonzero`` and boolean-mask indexing, a stream or
    device synchronize); the Python stack at the warning names the line. A site is its ``frames``
    innermost frames (innermost first). The warnings cost host time: the sites are counted in the
    profiled window only, whose wall time they then inflate a little."""

    def __init__(self, frames: int = 3):
        self.frames, self.counts = frames, Counter()
        self._warnings = self._shown = None

    def start(self) -> None:
        self._warnings = warnings.catch_warnings()  # restores the filters and showwarning at stop()
        self._warnings.__enter__()
        warnings.simplefilter("always")  # every occurrence, not the first one per line
        self._shown = warnings.showwarning
        warnings.showwarning = self._record
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("warn")

    def stop(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode(0)
        self._warnings.__exit__(None, None, None)

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        if SYNC_WARNING not in str(message):
            return self._shown(message, category, filename, lineno, file, line)
        stack = [f for f in traceback.extract_stack()[:-1] if f.filename != warnings.__file__]
        self.counts[" <- ".join(f"{_short(f.filename)}:{f.lineno} {f.name}" for f in reversed(stack[-self.frames:]))] += 1

    def per_step(self, steps: int) -> list[dict]:
        return [{"site": site, "per_step": round(n / steps, 2)} for site, n in self.counts.most_common()]


class ProfileWindow(Callback):
    """Profiles batches ``warmup`` .. ``warmup + steps - 1`` of the first stage it sees (train or predict).

    Every span runs from one batch end to another (so each batch counts with the gap before it, data
    loading included), the profiled one and the unprofiled one of the ``steps`` batches before it,
    which never include the first batch (cold)."""

    def __init__(self, warmup: int, steps: int, sync_sites: bool = False, python: bool = False):
        self.warmup, self.steps, self.seen, self.python = warmup, steps, 0, python
        self.sites = SyncSites() if sync_sites else None
        self.profiler, self.wall_s, self.plain_s, self._t_plain = None, None, None, None
        # (samples, real tokens) of the unprofiled and the profiled batches: is the comparison fair?
        self.work = {"unprofiled": [0, 0], "profiled": [0, 0]}

    def _batch_end(self, batch: dict) -> None:
        self.seen += 1
        window = ("unprofiled" if self.warmup - self.steps < self.seen <= self.warmup and self._t_plain is not None
                  else "profiled" if self.warmup < self.seen <= self.warmup + self.steps else None)
        if window:
            self.work[window][0] += len(batch["fname"])
            self.work[window][1] += int(batch["num_tokens"])
        if self.seen == self.warmup - self.steps:  # the unprofiled batches start after this one
            sync()
            self._t_plain = time.perf_counter()
        if self.seen == self.warmup:
            sync()
            if self._t_plain is not None:
                self.plain_s = time.perf_counter() - self._t_plain
            if self.python:
                self.profiler = cProfile.Profile()
            else:
                activities = [torch.profiler.ProfilerActivity.CPU]
                if torch.cuda.is_available():
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()
            if self.sites is not None:
                self.sites.start()
            self._t0 = time.perf_counter()
        elif self.profiler is not None and self.wall_s is None and self.seen == self.warmup + self.steps:
            if self.sites is not None:
                self.sites.stop()  # before the window's own synchronization
            sync()
            self.wall_s = time.perf_counter() - self._t0
            self.profiler.__exit__(None, None, None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batch_end(batch)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end(batch)


def _device_us(event) -> float:
    """An operator's own GPU time in microseconds (the attribute's name changed across torch versions)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def python_rows(profiler: cProfile.Profile, steps: int, top: int) -> dict:
    """The window's Python functions with the most own time and the most cumulative time, per step."""
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (primitive calls, calls, own s, cumulative s, callers)

    def rows(column: int) -> list[dict]:
        ranked = sorted(stats.items(), key=lambda item: item[1][column], reverse=True)[:top]
        return [{"function": f"{_short(file)}:{line}({name})", "calls_per_step": round(calls / steps, 1),
                 "own_ms_per_step": round(own * 1e3 / steps, 3), "cumulative_ms_per_step": round(cum * 1e3 / steps, 3)}
                for (file, line, name), (_, calls, own, cum, _) in ranked]
    return {"top_own": rows(2), "top_cumulative": rows(3)}


def summarise(window: ProfileWindow, top: int) -> dict:
    """Per-step figures and the top operators (or Python functions) of the profiled window."""
    if window.wall_s is None:
        print(f"profile_step: the run ended before {window.warmup + window.steps} batches "
              f"(saw {window.seen}); use fewer --warmup/--steps or more data", file=sys.stderr)
        raise SystemExit(2)
    wall_ms, steps = window.wall_s * 1e3, window.steps
    plain_ms = window.plain_s * 1e3 if window.plain_s is not None else None
    timing = {"steps": steps, "wall_ms_per_step": round(wall_ms / steps, 2),
              "unprofiled_wall_ms_per_step": round(plain_ms / steps, 2) if plain_ms is not None else None,
              "samples_and_tokens": window.work}  # per window: unequal work makes the two walls incomparable
    if window.python:
        return {**timing, "python": python_rows(window.profiler, steps, top)}
    averages = window.profiler.key_averages()
    by_name = {e.key: e for e in averages}
    count = lambda names: sum(by_name[n].count for n in names if n in by_name)  # noqa: E731
    # What torch's own table sums as "Self CUDA time total": the device-side events (kernels,
    # copies), not the host operators that launched them (those carry the same time again).
    host = [e for e in averages if e.device_type == DeviceType.CPU]
    device = [e for e in averages if e.device_type != DeviceType.CPU and not getattr(e, "is_user_annotation", False)]
    kernel_ms = sum(_device_us(e) for e in device) / 1e3

    def rows(events, key) -> list[dict]:
        ranked = sorted(events, key=key, reverse=True)[:top]
        return [{"op": e.key, "calls_per_step": round(e.count / steps, 1),
                 "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1e3 / steps, 3),
                 "self_gpu_ms_per_step": round(_device_us(e) / 1e3 / steps, 3)} for e in ranked]

    return {**timing, "gpu_kernel_ms_per_step": round(kernel_ms / steps, 2),
            "gpu_busy_share": round(kernel_ms / wall_ms, 3) if wall_ms else None,
            "kernel_launches_per_step": round(count(LAUNCHES) / steps, 1),
            "graph_launches_per_step": round(count(GRAPH_LAUNCHES) / steps, 1),
            "syncs_per_step": round(count(SYNCS) / steps, 1),
            "sync_sites": window.sites.per_step(steps) if window.sites is not None else None,
            "top_host": rows(host, lambda e: e.self_cpu_time_total), "top_gpu": rows(device, _device_us)}


def materialize(args) -> None:
    """The random-weight model of the config's family, saved once; ``args.model_dir`` names it."""
    init = yaml.safe_load((REPO / args.config).read_text())["model"]["init_args"]
    if "max_source_length" in init:  # a seq2seq (BART) config
        from kobart_group import BART_BASE, TINY_BART, materialize_seq2seq
        materialize_seq2seq(args, TINY_BART if args.tiny else BART_BASE)  # sets args.model_dir
    else:
        from causal_groups import materialize as materialize_causal
        args.model_dir = args.model_dir or str(Path(args.scratch) / "random-causal")
        materialize_causal(args)


def profile(args, overrides: list[str]) -> dict:
    """One run of the config with ``overrides``, profiled over the window."""
    from lightning_summ.commands.lightning import run_cli

    stage = "fit" if args.stage == "train" else "predict"
    argv = ["--config", str(REPO / args.config), f"--model.init_args.pretrained={args.model_dir}",
            f"--data.train_path={args.data}", f"--data.val_path={args.data}", f"--data.predict_path={args.data}",
            "--data.num_workers=0", "--trainer.logger=false", "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]", f"--trainer.default_root_dir={args.scratch}",
            "--trainer.limit_val_batches=0", "--model.init_args.evaluation.rouge_tokenizer=whitespace",
            f"--trainer.max_steps={args.warmup + args.steps}", "--trainer.max_epochs=1000",
            f"--trainer.limit_predict_batches={args.warmup + args.steps}",
            f"--submission.output_path={Path(args.scratch) / 'predictions.csv'}", *overrides]
    torch._dynamo.reset()  # a variant must not reuse blocks compiled under another's settings (same class, same code)
    cli = run_cli(argv, run=False)
    window = ProfileWindow(args.warmup, args.steps, args.sync_sites, args.python)
    cli.trainer.callbacks.append(window)
    if stage == "fit":
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    else:
        cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
    return summarise(window, args.top)


def table(results: dict) -> str:
    lines = ["| variant | wall ms/step (unprofiled) | wall ms/step | GPU kernel ms/step | GPU busy | kernel launches/step | graph launches/step | syncs/step |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "python" in r:  # --python: no kernel figures
            lines.append(f"| {name} | {r['unprofiled_wall_ms_per_step']} | {r['wall_ms_per_step']} | | | | | |")
            continue
        lines.append(f"| {name} | {r['unprofiled_wall_ms_per_step']} | {r['wall_ms_per_step']} | {r['gpu_kernel_ms_per_step']} | {r['gpu_busy_share']:.1%} "
                     f"| {r['kernel_launches_per_step']} | {r['graph_launches_per_step']} | {r['syncs_per_step']} |")
    for name, r in results.items():
        if "python" in r:
            for title, key in (("own time", "top_own"), ("cumulative time", "top_cumulative")):
                lines += ["", f"{name}: Python functions by {title} (per step, under cProfile)",
                          "| function | calls | own ms | cumulative ms |", "|---|---|---|---|"]
                lines += [f"| {f['function'][:90]} | {f['calls_per_step']} | {f['own_ms_per_step']} | "
                          f"{f['cumulative_ms_per_step']} |" for f in r["python"][key]]
            continue
        if r.get("sync_sites") is not None:
            lines += ["", f"{name}: synchronizing calls by site (innermost frame first)", "| per step | site |", "|---|---|"]
            lines += [f"| {s['per_step']} | {s['site']} |" for s in r["sync_sites"]] or ["| 0 | (none) |"]
        for title, key in (("host time", "top_host"), ("GPU time (kernels)", "top_gpu")):
            lines += ["", f"{name}: top operators by {title} (per step)", "| op | calls | self host ms | self GPU ms |",
                      "|---|---|---|---|"]
            lines += [f"| {o['op'][:70]} | {o['calls_per_step']} | {o['self_cpu_ms_per_step']} | {o['self_gpu_ms_per_step']} |"
                      for o in r[key]]
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, overrides = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant '{text}': use NAME=OVERRIDES (OVERRIDES may be empty)")
    return name, overrides.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a shipped config (configs/*.yaml)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--stage", choices=["train", "predict"], default="train",
                        help="profile training steps (fit) or generation batches (predict)")
    parser.add_argument("--variant", type=parse_variant, action="append",
                        help="NAME=OVERRIDES, one run each (default: one run of the config as shipped)")
    parser.add_argument("--warmup", type=int, default=10, help="batches before the profiled window (its last --steps, "
                        "if they do not include the first batch, are timed without the profiler, to show its overhead)")
    parser.add_argument("--steps", type=int, default=5, help="batches profiled (training: micro-batches)")
    parser.add_argument("--sync_sites", action="store_true", help="also count the profiled window's host-device "
                        "synchronizations by the Python lines that made them (torch.cuda.set_sync_debug_mode)")
    parser.add_argument("--python", action="store_true", help="profile the window with cProfile instead of "
                        "torch.profiler: the Python functions the host time goes to (no kernel figures; on CUDA "
                        "the backward's own thread shows as run_backward)")
    parser.add_argument("--top", type=int, default=12, help="operators listed per table")
    parser.add_argument("--model_dir", default=None, help="causal configs: where the random-weight model is saved")
    parser.add_argument("--scratch", default="/tmp/profile_step")
    parser.add_argument("--tiny", action="store_true", help="a tiny model of the config's family (CPU smoke test)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.python and args.sync_sites:
        parser.error("--python and --sync_sites are separate runs (both would add to the same window's host time)")
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1 (the window starts after a batch end)")
    if not (REPO / args.config).is_file():
        parser.error(f"--config {args.config}: no such file under {REPO}")
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    materialize(args)
    results = {name: profile(args, overrides) for name, overrides in (args.variant or [("shipped", [])])}
    text = table(results)
    with atomic_write(Path(args.out) / "profile_step.json") as f:
        json.dump({"config": args.config, "stage": args.stage, "warmup": args.warmup, "steps": args.steps,
                   "variants": results}, f, indent=2)
    with atomic_write(Path(args.out) / "profile_step.md") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
