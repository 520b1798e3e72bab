"""A. Awaited round trip: sequential ``await call(identity, i)``, each awaited before the next."""

from __future__ import annotations

import statistics
import time
from typing import Any

from .. import workload
from ..peers import Call
from .common import percentile


async def round_trip(call: Call, *, calls: int, warmup: int, budget_s: float) -> dict[str, Any]:
    """Median latency of ``calls`` sequential round trips (fewer if ``budget_s`` runs out first).

    At least ``warmup`` calls always run first and are not counted; at least 20 are timed.
    """
    for i in range(warmup):
        await call(workload.identity, i)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    for i in range(calls):
        start = time.perf_counter()
        result = await call(workload.identity, i)
        end = time.perf_counter()
        if result != i:
            raise AssertionError(f"identity({i}) returned {result!r}")
        times.append(end - start)
        if end > deadline and len(times) >= 20:
            break
    return {
        "latency_us": 1e6 * statistics.median(times),
        "p90_us": 1e6 * percentile(times, 0.9),
        "calls": len(times),
    }
