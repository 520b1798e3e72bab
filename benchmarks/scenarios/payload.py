"""D. Large payloads: a float64 numpy array (``sum()`` back) or ``bytes`` (``len`` back) sent to a child,
and what such an argument costs the child's peak memory (D-peak)."""

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


async def worker_peak(call: Call, *, kind: str, megabytes: float) -> dict[str, Any]:
    """How much a payload of ``megabytes`` raises the peak resident memory of the (only) worker that
    receives it: its VmHWM once it has read the payload, less its VmRSS just before the call (the
    peak reset there), as a multiple of the payload's size. 1.0: the payload once, as a view of
    shared memory or a single copy; 2.0: two copies at once (a pickle and the object built from it)."""
    small, _, _ = make_payload(kind, WARMUP_BYTES)
    await call(workload.peak_memory_with, small)  # the worker imports numpy now, not in the measured call
    payload, _, _ = make_payload(kind, int(megabytes * 1e6))
    size = payload.nbytes if kind == "array" else len(payload)
    before = await call(workload.reset_peak_memory)
    peak = await call(workload.peak_memory_with, payload)
    return {"peak_x": (peak - before) / size, "peak_mb": (peak - before) / 1e6, "payload_mb": size / 1e6}
