"""The import graph of the package: the commands sit on top, and no module imports itself back.

Every ``import`` counts, also those inside functions: a lazy import that closes a circle (the old
``cli.py -> cv.py -> cli.py``) is still a circle in the design, it only fails later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lightning_summ

PACKAGE = Path(lightning_summ.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from a.b import c`` means ``a.b.c`` if that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    # Importing a.b.c first runs a/__init__ and a/b/__init__: those are edges too.
    found |= {".".join(m.split(".")[:i]) for m in list(found) for i in range(1, m.count(".") + 1)}
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as a path ``[a, b, ..., a]``, or ``[]``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "lightning_summ.commands.lightning" in graph["lightning_summ.commands.cv"]  # a function-level import
    assert "lightning_summ.io" in graph["lightning_summ.metrics.rouge"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_nothing_outside_commands_imports_the_commands():
    # __main__ is the `python -m lightning_summ` entry point, i.e. the command line itself.
    outside = {m: imports for m, imports in import_graph().items()
               if not m.startswith("lightning_summ.commands") and m != "lightning_summ.__main__"}
    offenders = {m: sorted(i for i in imports if i.startswith("lightning_summ.commands")) for m, imports in outside.items()}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_the_package_has_no_import_circle():
    assert find_cycle(import_graph()) == []


def test_a_module_imported_first_in_a_fresh_interpreter_loads():
    """The processor imported on its own (as a script would): the circle data/__init__ -> datamodule ->
    processing -> data.batching failed here with 'partially initialized module'."""
    import subprocess
    import sys

    code = "import lightning_summ.processing, lightning_summ.data.batching, lightning_summ.decoding.generate"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_importing_the_llm_path_prints_nothing():
    """bitsandbytes' import-time advice about an optional CPU kernel package is silenced (it
    printed on every run on CPUs with AVX-512 BF16)."""
    import subprocess
    import sys

    code = "import lightning_summ.models.causal, peft, bitsandbytes"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "kernels-community" not in proc.stderr + proc.stdout  # on CPUs with AVX-512 BF16 it would print
    # on any CPU: the filter drops exactly that record and lets the logger's others through
    import logging

    import lightning_summ  # noqa: F401

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    make = lambda msg: logging.LogRecord(logger.name, logging.WARNING, __file__, 1, msg, (), None)  # noqa: E731
    assert not logger.filter(make("Failed to load CPU gemm_4bit_forward from kernels-community: %s."))
    assert logger.filter(make("another bitsandbytes warning"))
