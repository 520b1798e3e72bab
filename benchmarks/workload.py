"""The functions that the benchmarks run in worker processes.

Stdlib only and importable as ``benchmarks.workload``, so every peer (plain pickle, cloudpickle,
spawn, fork or forkserver) sends them by reference and no peer pays for pickling code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol


class Summable(Protocol):
    """Anything with a ``sum()`` method, such as a numpy array (this module does not import numpy)."""

    def sum(self) -> Any:
        """The sum of the elements."""


def identity(x: Any) -> Any:
    """Return ``x``: a task that costs nothing but its round trip."""
    return x


def increment(x: int) -> int:
    """Return ``x + 1``: the tiny item function of the map scenario."""
    return x + 1


def spin(iterations: int) -> int:
    """Burn CPU in pure Python (holding the GIL) for ``iterations`` loop turns; return a checksum."""
    total = 0
    for i in range(iterations):
        total += i & 7
    return total


def probe(delay: float) -> int:
    """Sleep ``delay`` seconds (keeping this worker busy so the next call goes to another) and return the pid."""
    time.sleep(delay)
    return os.getpid()


def array_sum(array: Summable) -> float:
    """The sum of a numpy array's elements."""
    return float(array.sum())


def byte_count(data: bytes) -> int:
    """The length of ``data``."""
    return len(data)


def reset_peak_memory() -> int:
    """Make this process's peak resident memory (VmHWM) its resident memory now; that, in bytes."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM (Linux 4.0 and later)
    return _status_bytes("VmRSS")


def peak_memory_with(payload: Any) -> int:
    """This process's peak resident memory (VmHWM, bytes) since `reset_peak_memory`, once it has
    received ``payload`` and read all of it (``sum()`` of an array, ``len`` of bytes, as D does)."""
    if hasattr(payload, "sum"):
        payload.sum()
    else:
        len(payload)
    return _status_bytes("VmHWM")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # in kB
    raise LookupError(f"no {field} in /proc/self/status")


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` from a coroutine: for peers (aiomultiprocess) that run only ``async def`` functions."""
    return fn(*args)
