"""Writing output files safely: atomically (a crash or Ctrl-C never leaves a half-written file in
place), and only where a check made before the run started showed that writing works."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, TextIO

from lightning_summ.errors import ConfigError


@contextlib.contextmanager
def atomic_write(path: str | Path, newline: str | None = None) -> Iterator[TextIO]:
    """Write to a temporary file beside ``path`` and rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable(path: str | Path, option: str, directory: bool = False) -> None:
    """Fail now, in one line naming ``option``, if ``path`` could not be written later: a run checks
    its outputs before it starts, not after an hour of prediction. ``directory``: ``path`` is a
    directory to create, else a file. The check makes the missing directories and a probe file for
    real, then removes what it made (permission bits say nothing of read-only mounts, and root
    passes them all)."""
    path = Path(path)
    if not directory and path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory, not a file")
    target = path if directory else path.parent
    created: list[Path] = []
    try:
        for folder in [*reversed(target.parents), target]:
            if folder.is_dir():
                continue
            if folder.exists():
                raise ConfigError(f"{option} {path}: {folder} is a file, not a directory")
            folder.mkdir()
            created.append(folder)
        fd, probe = tempfile.mkstemp(prefix=".lightning_summ.", suffix=".probe", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{option} {path}: cannot write there ({e.strerror or e})") from None
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
