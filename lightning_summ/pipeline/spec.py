"""The pipeline YAML, checked before anything runs (one line naming the key on a mistake).

    output_dir: logs/pipeline-quickstart     # run directory: stages/, members/, report.{md,json}, plots/
    members:
      - name: bart-a                         # unique: letters, digits, '.', '-', '_'
        config: configs/quickstart.yaml      # a shipped or user config (relative to the working directory)
        overrides: ["--trainer.max_epochs=2"]  # any fit flags
        folds: 2                             # k-fold (cv) or null: one fit on train, scored on val
    api:                                     # optional: an API baseline on a sample of validation rows
      config: configs/solar-api.yaml         # an ApiSummarizer config
      rows: 50                               # validation rows (a seeded sample of its data.val_path)
      seed: 0
      overrides: []                          # any predict flags for the API config
    ensemble: {method: mbr}                  # mbr | weighted | soft_voting | none
    tta: {num_aug: 2, augmenters: [speaker_swap, filler_removal]}   # or false (the default): no TTA
    references: pkg://sample_data/test.csv   # optional: score members, ensemble and TTA on the predict file;
                                             # `predict_path`: the members' data.predict_path itself (it has summaries)

Ensemble methods: ``mbr`` and ``weighted`` combine the candidates of every checkpoint of every member
(weighted: each member's weight is its out-of-fold or validation ``rouge_mean``); ``soft_voting`` decodes
with the best member's checkpoints together (its folds: one beam search over their mean log-probs);
``none`` keeps the best member's first checkpoint. ``tta`` re-decodes the same checkpoints with
test-time augmentation for the final submission.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lightning_summ.errors import ConfigError

METHODS = ("mbr", "weighted", "soft_voting", "none")
AUGMENTERS = ("speaker_swap", "filler_removal", "sentence_split", "synonym")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a folder and a TensorBoard run name
_TOP = ("output_dir", "members", "api", "ensemble", "tta", "references")


def _keys(where: str, raw, known: tuple) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(known)}")
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{sorted(unknown)[0]}' (known: {', '.join(known)})")
    return raw


def _flags(where: str, value) -> list[str]:
    value = value or []
    if not isinstance(value, list) or not all(isinstance(o, str) for o in value):
        raise ConfigError(f"{where}: expected a list of flags such as '--trainer.max_epochs=2'")
    return value


def _member(path: Path, i: int, raw) -> dict:
    where = f"{path}: members[{i}]"
    raw = _keys(where, raw, ("name", "config", "overrides", "folds"))
    name, config = raw.get("name"), raw.get("config")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}.name: expected letters, digits, '.', '-' or '_' (a letter or digit first), "
                          f"got {name!r}")
    if not isinstance(config, str):
        raise ConfigError(f"{where}.config: expected a config path, got {config!r}")
    folds = raw.get("folds")
    if folds is not None and (not isinstance(folds, int) or isinstance(folds, bool) or folds < 2):
        raise ConfigError(f"{where}.folds: expected null (one fit) or an integer >= 2, got {folds!r}")
    return {"name": name, "config": config, "overrides": _flags(f"{where}.overrides", raw.get("overrides")),
            "folds": folds}


def _positive_int(where: str, value, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _api(path: Path, raw):
    if raw is None:
        return None
    raw = _keys(f"{path}: api", raw, ("config", "rows", "seed", "overrides"))
    if not isinstance(raw.get("config"), str):
        raise ConfigError(f"{path}: api.config: expected a config path (an ApiSummarizer config), "
                          f"got {raw.get('config')!r}")
    return {"config": raw["config"], "rows": _positive_int(f"{path}: api.rows", raw.get("rows"), 1),
            "seed": _positive_int(f"{path}: api.seed", raw.get("seed", 0), 0),
            "overrides": _flags(f"{path}: api.overrides", raw.get("overrides"))}


def _tta(path: Path, raw):
    """``false``/absent: off; ``true``: the callback's defaults; a mapping: ``num_aug`` and ``augmenters``."""
    if raw is None or raw is False:
        return None
    raw = {} if raw is True else _keys(f"{path}: tta", raw, ("num_aug", "augmenters"))
    augmenters = raw.get("augmenters", ["speaker_swap", "filler_removal"])
    if not isinstance(augmenters, list) or not augmenters or any(a not in AUGMENTERS for a in augmenters):
        raise ConfigError(f"{path}: tta.augmenters: expected a non-empty list of {', '.join(AUGMENTERS)}, "
                          f"got {augmenters!r}")
    return {"num_aug": _positive_int(f"{path}: tta.num_aug", raw.get("num_aug", 2), 1), "augmenters": augmenters}


def _ensemble(path: Path, raw) -> dict:
    raw = _keys(f"{path}: ensemble", raw or {}, ("method",))
    method = raw.get("method", "none")
    if method not in METHODS:
        raise ConfigError(f"{path}: ensemble.method: expected one of {', '.join(METHODS)}, got {method!r}")
    return {"method": method}


def _read(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not a readable YAML file ({' '.join(str(e).split())})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with output_dir and members")
    return _keys(str(path), raw, _TOP)


def load_spec(path: str | Path) -> dict:
    path = Path(path)
    raw = _read(path)
    if not isinstance(raw.get("output_dir"), str):
        raise ConfigError(f"{path}: output_dir: expected a directory path")
    members = raw.get("members")
    if not isinstance(members, list) or not members:
        raise ConfigError(f"{path}: members: expected a non-empty list")
    members = [_member(path, i, m) for i, m in enumerate(members)]
    names = [m["name"] for m in members]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: members: the name '{next(n for n in names if names.count(n) > 1)}' is used twice")
    references = raw.get("references")
    if references is not None and not isinstance(references, str):
        raise ConfigError(f"{path}: references: expected a file path, got {references!r}")
    return {"output_dir": raw["output_dir"], "members": members, "api": _api(path, raw.get("api")),
            "ensemble": _ensemble(path, raw.get("ensemble")), "tta": _tta(path, raw.get("tta")),
            "references": references}
