"""Stages run once: ``<run>/stages/<stage>.json`` marks a finished stage with the fingerprint of its
settings (what the pipeline YAML says about it) and of its inputs (the records of the stages it reads).
A rerun skips it; a changed setting for a finished stage is refused unless that stage is restarted
(``--pipeline.restart STAGE``); a stage whose inputs were redone since (a restarted or retried member)
is redone, since its result no longer follows from them; a failed stage is recorded but not finished,
so a rerun retries it."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

from lightning_summ.console import say
from lightning_summ.errors import ConfigError
from lightning_summ.outputs import atomic_write


def fingerprint(settings) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text[:300]}"


def identity(record: Optional[dict]) -> Optional[list]:
    """What a downstream stage remembers of an input stage's record: which run of it, and how it ended."""
    return None if record is None else [record["stage"], record["status"], record["start"]]


class Stages:
    def __init__(self, run_dir: Path, restart: Optional[str] = None):
        self.dir = run_dir / "stages"
        self.restart = restart
        self.timeline: list[dict] = []

    def record(self, name: str) -> Optional[dict]:
        path = self.dir / f"{name}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def check(self, name: str, settings) -> None:
        """Refuse a changed setting for a finished stage (called for every stage before anything runs)."""
        done = self.record(name)
        if done and done["status"] == "done" and done["fingerprint"] != fingerprint(settings) and self.restart != name:
            raise ConfigError(f"stage '{name}' finished with other settings ({self.dir / (name + '.json')}); "
                              f"rerun with --pipeline.restart {name} to redo it")

    def run(self, name: str, settings, work: Callable[[], dict], inputs: Optional[list] = None,
            outputs: Optional[Path] = None) -> dict:
        """The stage's record: the finished one, or a new one after running ``work`` (whose exception
        is recorded as the stage's one-line failure). ``inputs``: the records the stage reads.
        ``outputs``: the stage's folder, emptied before a restart or a run with other settings than
        its last attempt's (a k-fold member would otherwise resume folds finished with the old
        settings); kept after an interrupted attempt with the same settings, which resumes from it."""
        self.check(name, settings)
        done = self.record(name)
        inputs_print = fingerprint([identity(r) for r in inputs or []])
        if done and done["status"] == "done" and self.restart != name:
            if done.get("inputs") == inputs_print:
                say(f"pipeline: stage {name} is done; skipping")
                # the timeline shows when the stage really ran (an earlier invocation)
                self.timeline.append({"stage": name, "status": "skipped (done)", "start": done.get("start"),
                                      "seconds": done.get("seconds", 0.0)})
                return done
            say(f"pipeline: the stages stage {name} reads were redone since it finished; redoing it")
        if outputs is not None and outputs.exists() and (
                self.restart == name or (done and done["fingerprint"] != fingerprint(settings))):
            say(f"pipeline: removing {outputs} before redoing stage {name}")
            shutil.rmtree(outputs)
        start = time.time()
        say(f"pipeline: stage {name} ...")
        try:
            record = {"status": "done", "result": work(), "error": None}
        except Exception as e:  # noqa: BLE001 - a failing member must not stop the others
            record = {"status": "failed", "result": None, "error": one_line(e)}
            say(f"pipeline: stage {name} failed: {record['error']}")
        record.update(stage=name, fingerprint=fingerprint(settings), inputs=inputs_print, start=start,
                      seconds=time.time() - start)
        with atomic_write(self.dir / f"{name}.json") as f:
            json.dump(record, f, ensure_ascii=False, indent=2)
        self.timeline.append({"stage": name, "status": record["status"], "start": start, "seconds": record["seconds"]})
        return record
