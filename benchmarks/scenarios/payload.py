"""D. Large payloads: a float64 numpy array (``sum()`` back) or ``bytes`` (``len`` back) sent to a child."""

from __future__ import annotations

import statistics
import time
from typing import Any

from .. import workload
from ..peers import Call

WARMUP_BYTES = 80_000  # a small payload of the same kind first: the child imports numpy, caches warm up


def make_payload(kind: str, size: int) -> tuple[Any, Any, Any]:
    """A payload of about ``size`` bytes, the function to send it to, and the result to expect.

    Raises:
        ValueError: ``kind`` is neither ``"array"`` nor ``"bytes"``.
    """
    if kind == "array":
        import numpy  # imported only by the cells that need it

        count = size // 8
        return numpy.arange(count, dtype=numpy.float64), workload.array_sum, float(count * (count - 1) // 2)
    if kind == "bytes":
        data = bytes(range(256)) * (size // 256)
        return data, workload.byte_count, len(data)
    raise ValueError(f"unknown payload kind {kind!r}: use 'array' or 'bytes'")


async def send_payload(call: Call, *, kind: str, megabytes: float, transfers: int) -> dict[str, Any]:
    """Megabytes per second (1 MB = 10**6 bytes) for ``transfers`` sequential calls with the payload."""
    small, fn, small_expected = make_payload(kind, WARMUP_BYTES)
    if await call(fn, small) != small_expected:
        raise AssertionError(f"{fn.__name__} returned a wrong result for the warm-up payload")
    payload, fn, expected = make_payload(kind, int(megabytes * 1e6))
    times = []
    for _ in range(transfers):
        start = time.perf_counter()
        result = await call(fn, payload)
        times.append(time.perf_counter() - start)
        if result != expected:
            raise AssertionError(f"{fn.__name__} returned {result!r}, expected {expected!r}")
    return {
        "mb_per_s": megabytes / statistics.median(times),
        "first_s": times[0],
        "transfers": transfers,
    }
