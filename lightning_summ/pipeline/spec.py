"""The pipeline YAML, checked before anything runs (one line naming the key on a mistake).

    output_dir: logs/pipeline-quickstart     # run directory: stages/, members/, report.{md,json}
    members:
      - name: bart-a                         # unique, letters/digits/-/_
        config: configs/quickstart.yaml      # a shipped or user config (relative to the working directory)
        overrides: ["--trainer.max_epochs=2"]  # any fit flags
        folds: 2                             # k-fold (cv) or null: one fit on train, scored on val
    ensemble: {method: mbr}                  # mbr | weighted | none (weighted: weights = validation rouge_mean)
    references: pkg://sample_data/test.csv   # optional: score members and the ensemble on the predict file
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lightning_summ.errors import ConfigError

METHODS = ("mbr", "weighted", "none")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _member(path: Path, i: int, raw) -> dict:
    where = f"{path}: members[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with name and config")
    unknown = set(raw) - {"name", "config", "overrides", "folds"}
    if unknown:
        raise ConfigError(f"{where}: unknown key '{sorted(unknown)[0]}' (known: name, config, overrides, folds)")
    name, config = raw.get("name"), raw.get("config")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}.name: expected letters, digits, '-' or '_', got {name!r}")
    if not isinstance(config, str):
        raise ConfigError(f"{where}.config: expected a config path, got {config!r}")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{where}.overrides: expected a list of flags such as '--trainer.max_epochs=2'")
    folds = raw.get("folds")
    if folds is not None and (not isinstance(folds, int) or isinstance(folds, bool) or folds < 2):
        raise ConfigError(f"{where}.folds: expected null (one fit) or an integer >= 2, got {folds!r}")
    return {"name": name, "config": config, "overrides": overrides, "folds": folds}


def load_spec(path: str | Path) -> dict:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not a readable YAML file ({' '.join(str(e).split())})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with output_dir and members")
    unknown = set(raw) - {"output_dir", "members", "ensemble", "references"}
    if unknown:
        raise ConfigError(f"{path}: unknown key '{sorted(unknown)[0]}' (known: output_dir, members, ensemble, references)")
    if not isinstance(raw.get("output_dir"), str):
        raise ConfigError(f"{path}: output_dir: expected a directory path")
    members = raw.get("members")
    if not isinstance(members, list) or not members:
        raise ConfigError(f"{path}: members: expected a non-empty list")
    members = [_member(path, i, m) for i, m in enumerate(members)]
    names = [m["name"] for m in members]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: members: the name '{next(n for n in names if names.count(n) > 1)}' is used twice")
    method = (raw.get("ensemble") or {}).get("method", "none") if isinstance(raw.get("ensemble") or {}, dict) else None
    if method not in METHODS:
        raise ConfigError(f"{path}: ensemble.method: expected one of {', '.join(METHODS)}, got {method!r}")
    references = raw.get("references")
    if references is not None and not isinstance(references, str):
        raise ConfigError(f"{path}: references: expected a file path, got {references!r}")
    return {"output_dir": raw["output_dir"], "members": members, "ensemble": {"method": method},
            "references": references}
