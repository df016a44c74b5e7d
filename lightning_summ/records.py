"""Reading the package's input files into numbered records, and where a problem in them is.

The rules every reader in :mod:`lightning_summ.io` shares: UTF-8 (a BOM is tolerated); JSON lines end
at ``"\\n"`` only and CSV records at ``\\r``/``\\n``/``\\r\\n`` only, so a text holding U+2028, U+0085 or
a form feed (JSON and CSV leave them unescaped; our writers emit them as they are) stays one record;
fnames are kept exactly as written (a leading space included) and must be non-empty and unique.
Every problem is one :class:`~lightning_summ.errors.DataError` line naming the file, the row and the
field: ``row N`` is the N-th data record, counted from 1 (the first record after the header is row 1;
the header and blank lines are not rows, a multi-line dialogue is one row), followed by the record's
``fname`` where it has one; ``header`` names the CSV header and ``line N`` the physical line where no
record can be read yet (bad UTF-8, bad JSON).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Optional

from lightning_summ.errors import DataError

Rows = list[tuple[int, dict]]
# csv refuses fields over 131,072 characters by default; a long dialogue is data like any other (the
# tokenizer truncates it), so the limit is the largest the platform's C long allows.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

# Delimiters people export by mistake (Excel, pandas' to_csv(sep=...)), named in the missing-column error.
_OTHER_DELIMITERS = {"\t": "tab", ";": "semicolon", "|": "pipe"}


def at_row(path: Path, row: int, fname: Optional[str] = None) -> str:
    """``file: row N`` where an error is, with the record's fname when it has one. N counts data
    records from 1 (the first record after the header is row 1; blank lines are not rows; a quoted
    dialogue spanning several lines is one row): row 3 is the third record, whatever line it starts on."""
    return f"{path}: row {row}" + (f" (fname {fname!r})" if fname else "")


def read_text(path: Path) -> str:
    """The file's text, decoded as UTF-8 (a BOM dropped); a missing, empty or undecodable file fails."""
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


def json_rows(path: Path, text: str) -> Rows:
    """``(row, record)`` pairs of a JSON-lines text; every non-blank line must be a JSON object."""
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


def read_rows(path: Path) -> tuple[Rows, list[str]]:
    """``(row, record)`` pairs of a CSV or JSON-lines file (by its suffix) and every column seen (all
    records' keys: JSON lines may differ); a file with no rows fails."""
    text = read_text(path)
    rows = json_rows(path, text) if _is_json(path) else _csv_rows(path, text)
    if not rows:
        raise DataError(f"{path}: the file has a header but no rows")
    columns = list(dict.fromkeys(key for _, record in rows for key in record))
    return rows, columns


def require_columns(path: Path, columns: list[str], *names: str) -> None:
    """Fail on the first of ``names`` missing from ``columns``, listing the columns that were found."""
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


def unique_fname(path: Path, row: int, record: dict, seen: dict[str, int]) -> str:
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
