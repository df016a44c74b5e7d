"""Package exports imported on first use (PEP 562).

``import lightning_summ.<package>.<module>`` then runs no other module of that package: ``--help``
stays free of torch and Lightning, and no package ``__init__`` can close an import circle.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], list[str]]:
    """``(__getattr__, __all__)`` for ``package``, whose names ``exports`` maps to their modules."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, list(exports)
