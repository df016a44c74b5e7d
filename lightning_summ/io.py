"""The one reader and writer of the package's files: examples, submissions and candidates.

* examples: the Korean competition CSVs ``fname,dialogue,summary[,topic]`` (test files have no
  ``summary``) and DialogSum JSON lines ``fname, dialogue, summary, topic`` or, multi-reference,
  ``summary1..summaryN`` / ``topic1..topicN``;
* submissions: the competition's ``fname,summary`` CSV (an extra index column is ignored);
* candidates: JSON lines, one object per input with ``fname``, ``summary`` and ``candidates``
  (each ``text`` + ``score``), the format ``predict`` writes and ``ensemble`` reads.

One set of rules for all of them, kept in :mod:`lightning_summ.records`: UTF-8, one record per row
whatever characters a text holds, fnames kept exactly as written, and every problem one
:class:`~lightning_summ.errors.DataError` line naming the file, the row and the field. Every output is
written atomically by :mod:`lightning_summ.outputs` (``atomic_write`` and ``check_writable`` are
importable from here too).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from lightning_summ.errors import DataError
from lightning_summ.outputs import atomic_write, check_writable
from lightning_summ.records import at_row, json_rows, read_rows, read_text, require_columns, unique_fname

__all__ = ["DataError", "Example", "normalize_text", "read_examples", "write_examples", "atomic_write",
           "check_writable", "write_submission", "read_submission", "read_submission_rows", "write_candidates",
           "read_candidates"]

# Fields a summary may come in: ``summary`` or ``summary1``, ``summary2``, ...
_SUMMARY_FIELD = re.compile(r"^summary(\d*)$")


@dataclass
class Example:
    """One input record: its id, the dialogue, its reference summaries (none in a test file), its topic."""

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


def read_examples(path: str | Path, require_summary: bool = False) -> list[Example]:
    """Read a CSV or JSONL file into :class:`Example` records, in file order.

    Args:
        path: ``.csv``, ``.jsonl`` or ``.json`` (JSON lines) file.
        require_summary: fail when a row has no reference summary (training/validation files).
    """
    path = Path(path)
    rows, columns = read_rows(path)
    require_columns(path, columns, "fname", "dialogue")
    found = [(m.group(1), c) for c in columns if (m := _SUMMARY_FIELD.match(str(c)))]
    summary_fields = [c for _, c in sorted(found, key=lambda x: int(x[0] or 0))]
    if require_summary and not summary_fields:
        raise DataError(f"{path}: header: missing column 'summary' (or summary1, summary2, ...)")
    examples, seen = [], {}
    for row, record in rows:
        fname = unique_fname(path, row, record, seen)
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
    rows, columns = read_rows(path)
    require_columns(path, columns, "fname", "summary")
    out, seen = [], {}
    for row, record in rows:
        fname = unique_fname(path, row, record, seen)
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
    rows, seen = json_rows(path, read_text(path)), {}
    out: dict[str, list[str]] = {}
    for row, record in rows:
        fname = unique_fname(path, row, record, seen)
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
