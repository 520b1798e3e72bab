"""The package's layout holds: packages talk only through their interfaces, without cycles, and
the child side stays import-light. Read from the source (ast), so nothing here runs procpool."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "procpool"
ROOT = "procpool"


def _module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(SRC.rglob("*.py"))}
PACKAGES = {_module_name(path) for path in SRC.rglob("__init__.py")}


def _unit(module: str) -> str:
    """What a module belongs to: its subpackage, or itself for a module at the top level."""
    parent = module.rpartition(".")[0]
    if module in PACKAGES:
        return module
    return module if parent == ROOT else parent


def _imports(module: str, source: str | None = None) -> Iterator[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import of a procpool module in
    ``module`` (its file, or ``source`` if given)."""
    package = module if module in PACKAGES else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(MODULES[module].read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target != ROOT and not target.startswith(ROOT + "."):
                continue
            names = [alias.name for alias in node.names]
            submodules = [name for name in names if f"{target}.{name}" in MODULES]
            for name in submodules:  # `from . import _wire`: the module itself is imported
                yield f"{target}.{name}", [], node.lineno
            others = [name for name in names if name not in submodules]
            if others:
                yield target, others, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(ROOT + "."):
                    yield alias.name, [], node.lineno


def _crossings() -> Iterator[tuple[str, str, list[str], int]]:
    for module in MODULES:
        for target, names, line in _imports(module):
            if _unit(target) != _unit(module):
                yield module, target, names, line


def _private_module(target: str) -> bool:
    """A module inside another package that is not that package's interface (its ``__init__``)
    nor a public module of it (``procpool.integrations.fastapi``)."""
    return target not in PACKAGES and _unit(target) != target and target.rpartition(".")[2].startswith("_")


def _trespasses(module: str, source: str | None = None) -> list[str]:
    """The imports of ``module`` that reach into another package's private modules or names."""
    return [
        f"{module}:{line} imports {target} {names}"
        for target, names, line in _imports(module, source)
        if _unit(target) != _unit(module) and (_private_module(target) or any(name.startswith("_") for name in names))
    ]


def test_packages_are_entered_only_through_their_interfaces() -> None:
    """Another package's private modules and private names are its own business."""
    assert [offence for module in MODULES for offence in _trespasses(module)] == []


def test_a_trespass_is_found() -> None:
    """The check above can fail: made-up imports into another package's insides are reported."""
    source = "from .._core._job import Job\nfrom .._core import _private, Task\nfrom ._slot import WorkerSlot\n"
    assert _trespasses("procpool._engine._local", source) == [
        "procpool._engine._local:1 imports procpool._core._job ['Job']",
        "procpool._engine._local:2 imports procpool._core ['_private', 'Task']",
    ]


def test_the_units_import_each_other_without_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for module, target, _, _ in _crossings():
        graph.setdefault(_unit(module), set()).add(_unit(target))
    visiting: list[str] = []
    done: set[str] = set()

    def visit(unit: str) -> None:
        if unit in done:
            return
        assert unit not in visiting, f"import cycle: {' -> '.join([*visiting[visiting.index(unit) :], unit])}"
        visiting.append(unit)
        for other in sorted(graph.get(unit, ())):
            visit(other)
        visiting.pop()
        done.add(unit)

    for unit in sorted(graph):
        visit(unit)


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("procpool._transport", {"procpool._errors", "procpool._descriptors"}),
        ("procpool._child", {"procpool._errors", "procpool._transport"}),
    ],
)
def test_the_child_side_stays_import_light(package: str, allowed: set[str]) -> None:
    """What a worker runs imports no anyio and none of the parent's machinery."""
    for module, path in MODULES.items():
        if _unit(module) != package:
            continue
        for target, _, line in _imports(module):
            assert _unit(target) in allowed | {package}, f"{module}:{line} imports {target}"
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(name == "anyio" or name.startswith("anyio.") for name in imported), module


# The packages that may import what only an extra installs, each beside the extra's name.
_EXTRAS_HOME = {"procpool._dask", "procpool.integrations"}


def _declared_dependencies() -> set[str]:
    project = tomllib.loads((SRC.parent.parent / "pyproject.toml").read_text())["project"]
    return {re.split(r"[^A-Za-z0-9_.-]", requirement, maxsplit=1)[0].lower() for requirement in project["dependencies"]}


def _undeclared_imports(module: str, source: str, declared: set[str]) -> list[str]:
    """The modules that ``module`` imports when it is imported (at its top level, outside any
    ``try``, ``if`` or function) that are neither the standard library's, procpool's, nor a
    declared dependency's (assumed importable by the distribution's name)."""
    found = []
    for node in ast.parse(source).body:
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        for name in names:
            top = name.partition(".")[0]
            if top not in sys.stdlib_module_names and top != ROOT and top.lower() not in declared:
                found.append(f"{module}:{node.lineno} imports {name}")
    return found


def test_every_module_imported_on_import_is_a_declared_dependency() -> None:
    """A plain ``pip install procpool`` brings all that opening a pool imports: sniffio, once
    brought by anyio, was missed when anyio dropped it (only trio, a test dependency, brought it)."""
    declared = _declared_dependencies()
    assert "anyio" in declared
    assert [
        found
        for module, path in MODULES.items()
        if _unit(module) not in _EXTRAS_HOME
        for found in _undeclared_imports(module, path.read_text(), declared)
    ] == []


def test_an_undeclared_import_is_found() -> None:
    source = (
        "import os\nimport sniffio\nfrom numpy import ndarray\ntry:\n    import uvloop\nexcept ImportError:\n    pass\n"
    )
    assert _undeclared_imports("procpool._x", source, {"anyio"}) == [
        "procpool._x:2 imports sniffio",
        "procpool._x:3 imports numpy",
    ]
