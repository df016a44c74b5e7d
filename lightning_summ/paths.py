"""Paths that work from any directory: ``pkg://`` names a file shipped inside the package."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

PACKAGE_DIR = Path(__file__).resolve().parent
PKG_PREFIX = "pkg://"


def resolve_path(path: Optional[str]) -> Optional[str]:
    """``pkg://sample_data/train.csv`` -> the installed package's file; other paths unchanged."""
    if path is None:
        return None
    path = str(path)
    if path.startswith(PKG_PREFIX):
        return str(PACKAGE_DIR / path[len(PKG_PREFIX):])
    return path
