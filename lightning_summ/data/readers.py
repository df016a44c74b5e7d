"""Read dialogue-summarization files: CSV or JSON lines, one or several references.

Both formats in use load without conversion:

* the Korean competition CSVs: ``fname,dialogue,summary[,topic]`` (test files have no ``summary``);
* English DialogSum JSONL: ``fname, dialogue, summary, topic`` or, in its test split,
  ``summary1..summary3`` / ``topic1..topic3`` (multi-reference).

Every problem is reported as one :class:`DataError` line naming the file, the row (the 1-based line
where the record starts, as an editor shows it; the header is row 1 of a CSV) and the field, so a
CLI can print it and exit.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# Fields a summary may come in: ``summary`` or ``summary1``, ``summary2``, ...
_SUMMARY_FIELD = re.compile(r"^summary(\d*)$")


from lightning_summ.errors import DataError  # noqa: E402  (one user-error type for the CLI)


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


def _summary_fields(columns) -> list[str]:
    found = [(m.group(1), c) for c in columns if (m := _SUMMARY_FIELD.match(c))]
    return [c for _, c in sorted(found, key=lambda x: int(x[0] or 0))]


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    """Return ``(row_number, record)`` pairs; row numbers match what an editor shows."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: row {line}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        # JSON lines are separated by "\n" only: str.splitlines() would also split inside strings at
        # U+2028, U+0085, form feeds, ... which JSON allows unescaped.
        for i, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: row {i}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: row {i}: expected a JSON object, got {type(record).__name__}")
            rows.append((i, record))
        return rows
    # newline="" ends lines at \r, \n and \r\n only (as csv expects); str.splitlines() would also end
    # them at U+2028, U+0085, ..., which csv writers leave unquoted, so a row would be cut in two.
    # csv.reader, not DictReader: DictReader skips blank lines unseen, which would shift the row number
    # of the record after one. csv tracks physical lines, so quoted multi-line fields keep numbers right.
    reader = csv.reader(io.StringIO(text, newline=""))
    fieldnames = next((values for values in reader if values), None)
    if fieldnames is None:
        raise DataError(f"{path}: the file is empty")
    rows = []
    start = reader.line_num + 1
    for values in reader:
        if values:
            record = dict(zip(fieldnames, values))
            record.update((name, None) for name in fieldnames[len(values):])
            rows.append((start, record))
        start = reader.line_num + 1
    return rows


def read_examples(path: str | Path, require_summary: bool = False) -> list[Example]:
    """Read a CSV or JSONL file into :class:`Example` records, in file order.

    Args:
        path: ``.csv``, ``.jsonl`` or ``.json`` (JSON lines) file.
        require_summary: fail when a row has no reference summary (training/validation files).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = _read_rows(path)
    if not rows:
        raise DataError(f"{path}: the file has a header but no rows")
    # All records' keys, not the first one's: JSON lines may differ (one has summary3, the first not).
    columns = list(dict.fromkeys(key for _, record in rows for key in record))
    for name in ("fname", "dialogue"):
        if name not in columns:
            raise DataError(f"{path}: row 1: missing column '{name}' (found: {', '.join(map(str, columns))})")
    summary_fields = _summary_fields(columns)
    if require_summary and not summary_fields:
        raise DataError(f"{path}: row 1: missing column 'summary' (or summary1, summary2, ...)")

    examples, seen = [], {}
    for row, record in rows:
        fname = str(record.get("fname") or "").strip()
        if not fname:
            raise DataError(f"{path}: row {row}: field 'fname' is empty")
        if fname in seen:
            raise DataError(f"{path}: row {row}: field 'fname': duplicate '{fname}' (first at row {seen[fname]})")
        seen[fname] = row
        dialogue = normalize_text(str(record.get("dialogue") or ""))
        if not dialogue:
            raise DataError(f"{path}: row {row}: field 'dialogue' is empty")
        summaries = [normalize_text(str(record[f])) for f in summary_fields if record.get(f)]
        summaries = [s for s in summaries if s]
        if require_summary and not summaries:
            raise DataError(f"{path}: row {row}: field '{summary_fields[0]}' is empty")
        topic = record.get("topic") or record.get("topic1")
        examples.append(Example(fname, dialogue, summaries, str(topic) if topic else None))
    return examples
