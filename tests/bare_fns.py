"""Task functions that look at what a worker has imported, in a module that imports only ``sys``
(`workfns` imports asyncio, which would then be there for them to find)."""

import sys


def loaded_modules(*prefixes: str) -> list[str]:
    """The modules this process has imported whose names start with one of ``prefixes``."""
    return sorted(name for name in sys.modules if name.startswith(prefixes))
