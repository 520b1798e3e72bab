"""Functions that tests/test_buffers.py runs in workers. Import-light: workers import this module."""

from __future__ import annotations

import mmap
import os
import signal
import time
from typing import Any


def echo(value: Any) -> Any:
    return value


def where(value: Any) -> str:
    """``"shared"`` if ``value``'s memory is a mapping (of the memory file that brought it), else ``"own"``."""
    while value is not None:
        if isinstance(value, mmap.mmap):
            return "shared"
        value = value.obj if isinstance(value, memoryview) else getattr(value, "base", None)
    return "own"


def arrival(value: Any) -> tuple[str, str, bool]:
    """How an argument arrived: its type, where its memory is, and whether it is writable."""
    writable = not memoryview(value).readonly if not isinstance(value, (bytes, bytearray)) else type(value) is bytearray
    return type(value).__name__, where(value), writable


def zero_first(array: Any) -> float:
    """Write into the argument (a numpy array), and return the sum it has then."""
    array[0] = 0
    return float(array.sum())


def ones(count: int) -> Any:
    import numpy

    return numpy.ones(count)


def raise_with(value: Any) -> None:
    raise ValueError(f"refused {len(value)} bytes")


def sleep_with(value: Any, seconds: float) -> int:
    time.sleep(seconds)
    return len(value)


def die_with(value: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def memory_files() -> list[str]:
    """The memory files this worker holds open: there should be none between tasks."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if "procpool-buffers" in target:
            found.append(target)
    return found


def mapped_memory_files() -> list[str]:
    """The memory files this worker still maps: none once the tasks' arguments are gone."""
    with open("/proc/self/maps") as maps:
        return [line.strip() for line in maps if "procpool-buffers" in line]


def arrays(count: int, size: int) -> Any:
    """A stream of ``count`` arrays of ``size`` float64s, the i-th full of i."""
    import numpy

    for i in range(count):
        yield numpy.full(size, float(i))


_kept: list[Any] = []


def keep(value: Any) -> None:
    """Keep ``value`` after the task (its view of the memory file that brought it stays mapped)."""
    _kept.append(value)


def kept_sums() -> list[float]:
    return [float(value.sum()) for value in _kept]


def uniform_chunks(chunks: list[bytes]) -> list[tuple[int, int]]:
    """Each chunk's first byte and length, if every byte of it is its first; else an error."""
    for chunk in chunks:
        if chunk.count(chunk[:1]) != len(chunk):
            raise AssertionError(f"a chunk starting {chunk[:1]!r} arrived torn")
    return [(chunk[0], len(chunk)) for chunk in chunks]
