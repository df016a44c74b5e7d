"""The one reader and writer of the package's files: examples, submissions and candidates.

* examples: the Korean competition CSVs ``fname,dialogue,summary[,topic]`` (test files have no
  ``summary``) and DialogSum JSON lines ``fname, dialogue, summary, topic`` or, multi-reference,
  ``summary1..summaryN`` / ``topic1..topicN``;
* submissions: the competition's ``fname,summary`` CSV (an extra index column is ignored);
* candidates: JSON lines, one object per input with ``fname``, ``summary`` and ``candidates``
  (each ``text`` + ``score``), the format ``predict`` writes and ``ensemble`` reads.

One set of rules for all of them: UTF-8 (a BOM is tolerated); JSON lines end at ``"\\n"`` only and CSV
records at ``\\r``/``\\n``/``\\r\\n`` only, so a text holding U+2028, U+0085 or a form feed (JSON and CSV
leave them unescaped; our writers emit them as they are) stays one record; fnames are kept exactly
as written (a leading space included); every problem is one :class:`~lightning_summ.errors.DataError`
line naming the file, the row and the field: ``row N`` is the N-th data record, counted from 1 (the first
record after the header is row 1; the header and blank lines are not rows, a multi-line dialogue is one row),
followed by the record's ``fname`` where it has one; ``header`` names the CSV header and ``line N``
the physical line where no record can be read yet (bad UTF-8, bad JSON). Every output is written
atomically: a crash or Ctrl-C never leaves a half-written file in place.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, TextIO

from lightning_summ.errors import ConfigError, DataError

__all__ = ["DataError", "Example", "normalize_text", "read_examples", "write_examples", "atomic_write",
           "check_writable", "write_submission", "read_submission", "read_submission_rows", "write_candidates",
           "read_candidates"]

# Fields a summary may come in: ``summary`` or ``summary1``, ``summary2``, ...
_SUMMARY_FIELD = re.compile(r"^summary(\d*)$")
Rows = list[tuple[int, dict]]
# csv refuses fields over 131,072 characters by default; a long dialogue is data like any other (the
# tokenizer truncates it), so the limit is the largest the platform's C long allows.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Example:
    fname: str
    dialogue: str
    summaries: list[str] = field(default_factory=list)
    topic: Optional[str] = None


def normalize_text(text: str) -> str:
    """Unify line breaks: CRLF/CR become ``\\n`` and a literal backslash-n (as some exports write
    it) becomes a real newline; trailing spaces of each line are dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\\n", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


# ----------------------------------------------------------------------------------------- reading

# Delimiters people export by mistake (Excel, pandas' to_csv(sep=...)), named in the missing-column error.
_OTHER_DELIMITERS = {"\t": "tab", ";": "semicolon", "|": "pipe"}


def at_row(path: Path, row: int, fname: Optional[str] = None) -> str:
    """``file: row N`` where an error is, with the record's fname when it has one. N counts data
    records from 1 (the first record after the header is row 1; blank lines are not rows; a quoted
    dialogue spanning several lines is one row): row 3 is the third record, whatever line it starts on."""
    return f"{path}: row {row}" + (f" (fname {fname!r})" if fname else "")


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # Before records exist there are only lines: the physical line, as an editor shows it.
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    return text


def _json_rows(path: Path, text: str) -> Rows:
    rows = []
    # "\n" only: str.splitlines() would also split inside strings at U+2028, U+0085, form feeds, ...
    # which JSON allows unescaped (and json.dumps(ensure_ascii=False) writes unescaped).
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {line_number}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {line_number}: expected a JSON object, got {type(record).__name__}")
        rows.append((len(rows) + 1, record))
    return rows


def _csv_rows(path: Path, text: str) -> Rows:
    # newline="" ends lines at \r, \n and \r\n only (as csv expects); csv keeps a quoted multi-line
    # field in one record. Blank lines are skipped (they are not rows).
    reader = csv.reader(io.StringIO(text, newline=""))
    fieldnames = next((values for values in reader if values), None)
    if fieldnames is None:
        raise DataError(f"{path}: the file is empty")
    rows = []
    for values in reader:
        if values:
            record = dict(zip(fieldnames, values))
            record.update((name, None) for name in fieldnames[len(values):])  # a short row: missing fields
            rows.append((len(rows) + 1, record))
    return rows


def _read_rows(path: Path) -> tuple[Rows, list[str]]:
    """``(row, record)`` pairs and every column seen (all records' keys: JSON lines may differ)."""
    text = _read_text(path)
    rows = _json_rows(path, text) if _is_json(path) else _csv_rows(path, text)
    if not rows:
        raise DataError(f"{path}: the file has a header but no rows")
    columns = list(dict.fromkeys(key for _, record in rows for key in record))
    return rows, columns


def _require_columns(path: Path, columns: list[str], *names: str) -> None:
    for name in names:
        if name not in columns:
            raise DataError(f"{path}: header: missing column '{name}' (found: {_header_seen(path, columns)})")


def _header_seen(path: Path, columns: list[str]) -> str:
    """The columns read, and why when the file was written with another delimiter than a comma."""
    if not _is_json(path):
        for delimiter, name in _OTHER_DELIMITERS.items():
            if any(delimiter in str(c) for c in columns):
                return (f"{', '.join(repr(str(c)) for c in columns)}; the header looks {name}-separated: "
                        "lightning_summ reads comma-separated CSV or JSONL")
    return ", ".join(map(str, columns)) or "nothing"


def _is_json(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".json")


def _fname(path: Path, row: int, record: dict, seen: dict[str, int]) -> str:
    """The record's non-empty, unique ``fname``, exactly as written (spaces included: it is an id that
    the submission must repeat); ``seen`` maps fnames to their first row."""
    value = record.get("fname")
    fname = "" if value is None else str(value)
    if not fname.strip():
        raise DataError(f"{at_row(path, row)}: field 'fname' is empty")
    if fname in seen:
        raise DataError(f"{at_row(path, row)}: field 'fname': duplicate {fname!r} (first at row {seen[fname]})")
    seen[fname] = row
    return fname


def read_examples(path: str | Path, require_summary: bool = False) -> list[Example]:
    """Read a CSV or JSONL file into :class:`Example` records, in file order.

    Args:
        path: ``.csv``, ``.jsonl`` or ``.json`` (JSON lines) file.
        require_summary: fail when a row has no reference summary (training/validation files).
    """
    path = Path(path)
    rows, columns = _read_rows(path)
    _require_columns(path, columns, "fname", "dialogue")
    found = [(m.group(1), c) for c in columns if (m := _SUMMARY_FIELD.match(str(c)))]
    summary_fields = [c for _, c in sorted(found, key=lambda x: int(x[0] or 0))]
    if require_summary and not summary_fields:
        raise DataError(f"{path}: header: missing column 'summary' (or summary1, summary2, ...)")
    examples, seen = [], {}
    for row, record in rows:
        fname = _fname(path, row, record, seen)
        dialogue = normalize_text(str(record.get("dialogue") or ""))
        if not dialogue:
            raise DataError(f"{at_row(path, row, fname)}: field 'dialogue' is empty")
        summaries = [s for s in (normalize_text(str(record[f])) for f in summary_fields if record.get(f)) if s]
        if require_summary and not summaries:
            raise DataError(f"{at_row(path, row, fname)}: field '{summary_fields[0]}' is empty")
        topic = record.get("topic") or record.get("topic1")
        examples.append(Example(fname, dialogue, summaries, str(topic) if topic else None))
    return examples


def read_submission_rows(path: str | Path) -> list[tuple[int, str, str]]:
    """``(row, fname, summary)`` of a ``fname,summary`` file in file order; fnames are unique."""
    path = Path(path)
    rows, columns = _read_rows(path)
    _require_columns(path, columns, "fname", "summary")
    out, seen = [], {}
    for row, record in rows:
        fname = _fname(path, row, record, seen)
        if record.get("summary") is None:
            raise DataError(f"{at_row(path, row, fname)}: field 'summary' is missing (short row)")
        out.append((row, fname, normalize_text(str(record["summary"]))))
    return out


def read_submission(path: str | Path) -> dict[str, str]:
    """fname -> summary of a ``fname,summary`` CSV, in file order."""
    return {fname: summary for _, fname, summary in read_submission_rows(path)}


def read_candidates(path: str | Path) -> dict[str, list[str]]:
    """fname -> candidate texts, best first (file order kept), from a candidates JSONL.

    A record without ``candidates`` counts as one candidate, its ``summary``."""
    path = Path(path)
    rows, seen = _json_rows(path, _read_text(path)), {}
    out: dict[str, list[str]] = {}
    for row, record in rows:
        fname = _fname(path, row, record, seen)
        candidates = record.get("candidates")
        if candidates:
            if not isinstance(candidates, list) or not all(isinstance(c, dict) and isinstance(c.get("text"), str)
                                                           for c in candidates):
                raise DataError(f"{at_row(path, row, fname)}: field 'candidates': "
                                "expected a list of objects with a 'text'")
            out[fname] = [c["text"] for c in candidates]
        elif isinstance(record.get("summary"), str):
            out[fname] = [record["summary"]]
        else:
            raise DataError(f"{at_row(path, row, fname)}: field 'candidates' (or 'summary') is missing")
    return out


# ----------------------------------------------------------------------------------------- writing


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


def write_submission(path: str | Path, rows: Iterable[tuple[str, str]]) -> None:
    """The competition's ``fname,summary`` CSV."""
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fname", "summary"])
        writer.writerows(rows)


def write_candidates(path: str | Path, records: Iterable[dict]) -> None:
    """One JSON object per line: ``fname``, ``summary``, ``candidates`` (other keys are dropped)."""
    with atomic_write(path) as f:
        for r in records:
            f.write(json.dumps({k: r[k] for k in ("fname", "summary", "candidates")}, ensure_ascii=False) + "\n")


def write_examples(path: str | Path, examples: list[Example]) -> None:
    """Examples in the competition's CSV format (several references become summary1..N)."""
    n_refs = max((len(ex.summaries) for ex in examples), default=0)
    summary_fields = ["summary"] if n_refs == 1 else [f"summary{i + 1}" for i in range(n_refs)]
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["fname", "dialogue", *summary_fields])
        for ex in examples:
            writer.writerow([ex.fname, ex.dialogue, *ex.summaries, *[""] * (n_refs - len(ex.summaries))])
