"""Stages run once: ``<run>/stages/<stage>.json`` marks a finished stage with the fingerprint of its
settings. A rerun skips it; a changed setting for a finished stage is refused unless that stage is
restarted (``--pipeline.restart STAGE``); a failed stage is recorded but not finished, so a rerun retries it."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Optional

from lightning_summ.console import say
from lightning_summ.errors import ConfigError
from lightning_summ.io import atomic_write


def fingerprint(settings) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text[:300]}"


class Stages:
    def __init__(self, run_dir: Path, restart: Optional[str] = None):
        self.dir = run_dir / "stages"
        self.restart = restart
        self.timeline: list[dict] = []

    def record(self, name: str) -> Optional[dict]:
        path = self.dir / f"{name}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def check(self, name: str, settings) -> None:
        """Refuse a changed setting for a finished stage before anything runs."""
        done = self.record(name)
        if done and done["status"] == "done" and done["fingerprint"] != fingerprint(settings) and self.restart != name:
            raise ConfigError(f"stage '{name}' finished with other settings ({self.dir / (name + '.json')}); "
                              f"rerun with --pipeline.restart {name} to redo it")

    def run(self, name: str, settings, work: Callable[[], dict]) -> dict:
        """The stage's record: the finished one, or a new one after running ``work`` (whose exception
        is recorded as the stage's one-line failure)."""
        self.check(name, settings)
        done = self.record(name)
        if done and done["status"] == "done" and self.restart != name:
            say(f"pipeline: stage {name} is done; skipping")
            self.timeline.append({"stage": name, "status": "skipped (done)", "start": None, "seconds": 0.0})
            return done
        start = time.time()
        say(f"pipeline: stage {name} ...")
        try:
            record = {"status": "done", "result": work(), "error": None}
        except Exception as e:  # noqa: BLE001 - a failing member must not stop the others
            record = {"status": "failed", "result": None, "error": one_line(e)}
            say(f"pipeline: stage {name} failed: {record['error']}")
        record.update(stage=name, fingerprint=fingerprint(settings), start=start, seconds=time.time() - start)
        with atomic_write(self.dir / f"{name}.json") as f:
            json.dump(record, f, ensure_ascii=False, indent=2)
        self.timeline.append({"stage": name, "status": record["status"], "start": start, "seconds": record["seconds"]})
        return record
