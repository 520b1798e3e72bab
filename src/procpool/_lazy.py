"""Names a package imports on first use (PEP 562), so that importing it costs little."""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # typing's, without importing typing (see `procpool/__init__`)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def import_on_first_use(package: str, homes: Mapping[str, str]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``: it imports each name of ``homes`` from the module
    named there (relative to ``package``) on first use, after which the package has it."""

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
