"""``lightning_summ tune``: hyper-parameter search over any config key with Optuna.

    lightning_summ tune --config configs/quickstart.yaml --tune.space space.yaml --tune.n_trials 20 [fit's flags]

``--tune.space`` is a YAML file of distributions keyed by config keys, e.g.

    model.init_args.optimizer.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    model.init_args.lora.r: {type: int, low: 4, high: 32, step: 4}
    data.batch_size: {type: categorical, choices: [8, 16]}

Each trial is one ``fit`` with the sampled values as ``--key=value`` flags, its own TensorBoard run
(``<save_dir>/<name>/tune/<study>/trial_N``) and a pruning callback that reports ``--tune.metric``
after every validation that computed it (median pruning; ``--tune.pruner none`` turns it off). The
trial's value is the best metric of its validations. The sampler is TPE, seeded with ``--tune.seed``.

The study lives in ``--tune.storage``: by default a SQLite file ``study.db`` in the study's run
directory; any Optuna RDB URL (``postgresql://...``, ``mysql://...``) works, so several workers, on
one machine or several, run the same command with the same storage and study name and share the
trials: together they run ``--tune.n_trials`` trials. After every finished trial the best config so
far is written to ``best.yaml`` in the run directory: the whole config with the best values merged,
ready for ``lightning_summ fit --config best.yaml``. Every option other than ``--tune.*`` is ``fit``'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path
from typing import Iterator, Literal, Optional

from lightning_summ.commands._args import split_options, verb_parser
from lightning_summ.console import say
from lightning_summ.errors import ConfigError
from lightning_summ.outputs import atomic_write

DISTRIBUTIONS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
                 "categorical": {"choices"}}


def read_space(path: str) -> dict[str, dict]:
    """The search space file: ``{config key: {type: ..., ...}}``, checked entry by entry."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            space = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"--tune.space {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--tune.space {path}: not valid YAML ({e})") from None
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"--tune.space {path}: expected a mapping of config keys to distributions")
    for key, spec in space.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"--tune.space {path}: {key}: 'type' must be one of {', '.join(DISTRIBUTIONS)}")
        needed = {"choices"} if kind == "categorical" else {"low", "high"}
        unknown, missing = set(spec) - DISTRIBUTIONS[kind] - {"type"}, needed - set(spec)
        if unknown or missing:
            raise ConfigError(f"--tune.space {path}: {key}: " + (f"unknown fields {sorted(unknown)}" if unknown
                              else f"missing {sorted(missing)}"))
        if kind == "categorical" and not (isinstance(spec["choices"], list) and spec["choices"]):
            raise ConfigError(f"--tune.space {path}: {key}: choices must be a non-empty list")
    return space


def suggest(trial, space: dict[str, dict]) -> dict:
    """The trial's value of every key of the space."""
    values = {}
    for key, spec in space.items():
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        if spec["type"] == "categorical":
            values[key] = trial.suggest_categorical(key, kwargs["choices"])
        else:
            values[key] = getattr(trial, f"suggest_{spec['type']}")(key, **kwargs)
    return values


def as_flags(values: dict) -> list[str]:
    """``--key=value`` flags; JSON values, which jsonargparse parses as YAML (lists, strings, numbers)."""
    return [f"--{key}={json.dumps(value)}" for key, value in values.items()]


def tune_options(space: str, n_trials: int = 20, metric: str = "val/rouge_mean",
                 direction: Literal["maximize", "minimize"] = "maximize", storage: Optional[str] = None,
                 study_name: str = "study", seed: int = 0, pruner: Literal["median", "none"] = "median",
                 n_startup_trials: int = 5, n_warmup_steps: int = 0) -> dict:
    """Options of ``tune`` (``--tune.*``).

    Args:
        space: YAML file: ``config.key: {type: float|int|categorical, ...}`` (see the command's help).
        n_trials: trials of the whole study (all workers together).
        metric: logged metric to optimise.
        direction: ``maximize`` (ROUGE) or ``minimize`` (a loss).
        storage: Optuna RDB URL; default ``sqlite:///<run dir>/study.db``.
        study_name: the study's name in the storage (workers sharing a study use the same one).
        seed: seed of the TPE sampler.
        pruner: ``median`` (stop a trial whose metric is below the median of earlier trials at the
            same epoch) or ``none``.
        n_startup_trials: trials that finish before pruning starts.
        n_warmup_steps: epochs of a trial before it can be pruned.
    """
    if n_trials < 1:
        raise ConfigError(f"--tune.n_trials must be at least 1, got {n_trials}")
    if n_startup_trials < 0 or n_warmup_steps < 0:
        raise ConfigError("--tune.n_startup_trials and --tune.n_warmup_steps must be >= 0")
    return {"space": read_space(space), "n_trials": n_trials, "metric": metric, "direction": direction,
            "storage": storage, "study_name": study_name, "seed": seed, "pruner": pruner,
            "n_startup_trials": n_startup_trials, "n_warmup_steps": n_warmup_steps}


def storage_url(options: dict, run_dir: Path) -> str:
    return options["storage"] or f"sqlite:///{run_dir / 'study.db'}"


def open_study(options: dict, url: str):
    import optuna

    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}  # workers wait for the lock
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except Exception as e:  # sqlalchemy's errors for a bad URL or an unreachable server are many types
        raise ConfigError(f"--tune.storage {url}: {type(e).__name__}: {e}") from None
    pruner = optuna.pruners.NopPruner() if options["pruner"] == "none" else optuna.pruners.MedianPruner(
        n_startup_trials=options["n_startup_trials"], n_warmup_steps=options["n_warmup_steps"])
    study = optuna.create_study(storage=storage, study_name=options["study_name"], load_if_exists=True,
                                direction=options["direction"], pruner=pruner,
                                sampler=optuna.samplers.TPESampler(seed=options["seed"]))
    return study


@contextlib.contextmanager
def study_lock(url: str) -> Iterator[None]:
    """Serialises, between workers sharing a SQLite file, the creation of the study (two workers
    creating its tables at once collide) and "count the trials, then start one", so that together
    they start exactly ``n_trials``. (Workers on several machines use a server database, where two
    workers checking at the same instant may start one trial more than asked.)"""
    if not url.startswith("sqlite:///"):
        yield
        return
    with open(url[len("sqlite:///"):] + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def next_trial(study, n_trials: int):
    """A new trial of ``study``, or ``None`` once the study holds ``n_trials`` (any state)."""
    if len(study.get_trials(deepcopy=False)) >= n_trials:
        return None
    return study.ask()


def main(args: list[str]) -> dict:
    own, rest = split_options(args, ("--tune.", "-h", "--help"))
    parser = verb_parser("tune", __doc__)
    parser.add_function_arguments(tune_options, "tune")
    options = tune_options(**parser.parse_args(own).tune.as_dict())
    from lightning_summ.commands.lightning import run_cli

    probe = run_cli(rest, run=False)  # resolves the config once: where the runs go
    logger = probe.trainer.logger
    if logger is None or not hasattr(logger, "save_dir"):
        raise ConfigError("tune needs a logger with a save_dir (the default TensorBoardLogger), not --trainer.logger "
                          f"{type(logger).__name__ if logger else 'false'}")
    if probe.trainer.world_size > 1:  # a multi-process strategy would start the whole search again in each process
        raise ConfigError(f"tune runs each trial in its own process on one device, not {probe.trainer.world_size}: "
                          "start one worker per GPU on the same study instead (README, Hyper-parameter search)")
    logger_name = f"{logger.name}/tune/{options['study_name']}"
    run_dir = Path(logger.save_dir) / logger_name
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url(options, run_dir)
    with study_lock(url):
        study = open_study(options, url)
    ran = 0
    while True:
        with study_lock(url):
            trial = next_trial(study, options["n_trials"])
        if trial is None:
            break
        state, value = run_trial(trial, study, options, rest, logger_name)
        ran += 1
        say(f"tune: trial {trial.number} {state}" + (f" ({options['metric']} {value:.4f})" if value is not None else ""))
        write_best_config(study, probe.parser, rest, run_dir / "best.yaml")
    summary = {"study": options["study_name"], "storage": url, "trials_run_here": ran,
               "trials": len(study.get_trials(deepcopy=False))}
    if any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        summary.update(best_value=study.best_value, best_params=study.best_params, best_config=str(run_dir / "best.yaml"))
        say(f"tune: best {options['metric']} {study.best_value:.4f} with {json.dumps(study.best_params)}; "
            f"config: {run_dir / 'best.yaml'}")
    return summary


def pruning_callback(trial, metric: str):
    """Optuna's Lightning pruning callback (optuna-integration) acting only on the validations that
    computed ``metric`` (``val/rouge_mean`` exists on generating epochs only; without this the callback
    would report a previous epoch's value again). It also records the reported values."""
    from optuna_integration import PyTorchLightningPruningCallback

    from lightning_summ.callbacks.checkpoint import _OnlyWhenComputed

    class TrialPruning(_OnlyWhenComputed, PyTorchLightningPruningCallback):
        def on_validation_end(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking and self._computed_now(trainer):
                self.reported.append(float(trainer.callback_metrics[self.monitor]))
                PyTorchLightningPruningCallback.on_validation_end(self, trainer, pl_module)

    callback = TrialPruning(trial, monitor=metric)
    callback.reported = []
    return callback


def run_trial(trial, study, options: dict, rest: list[str], logger_name: str) -> tuple[str, Optional[float]]:
    """One ``fit`` with the trial's values; tells the study how it ended."""
    import optuna

    from lightning_summ.commands.lightning import run_cli

    values = suggest(trial, options["space"])
    flags = [*rest, *as_flags(values), f"--trainer.logger.init_args.name={logger_name}",
             f"--trainer.logger.init_args.version=trial_{trial.number}"]
    callback = pruning_callback(trial, options["metric"])
    try:
        cli = run_cli(flags, run=False)
        cli.trainer.callbacks.append(callback)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return "pruned", None
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    if not callback.reported:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise ConfigError(f"--tune.metric {options['metric']} was never logged in trial {trial.number} (check the "
                          "name and that a validation computes it, e.g. evaluation.generate_every_n_epochs)")
    best = (max if options["direction"] == "maximize" else min)(callback.reported)
    study.tell(trial, best)
    return "complete", best


def write_best_config(study, parser, rest: list[str], path: Path) -> None:
    """The whole config of the best trial so far (the command line's config with its values merged),
    as ``fit`` reads it; nothing is written before a trial completes. Parsed, not instantiated: no
    model is built for it."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        return
    config = parser.parse_args([*rest, *as_flags(study.best_params)])
    text = parser.dump(config, skip_none=False, skip_validation=True)
    with atomic_write(path) as f:
        f.write(f"# lightning_summ tune: best trial {study.best_trial.number}, value {study.best_value}\n")
        f.write(text)
