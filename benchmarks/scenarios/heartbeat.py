"""E. Event-loop responsiveness: the lag of a 1 ms sleep loop while a B-style load runs."""

from __future__ import annotations

import statistics
import time
from typing import Any

import anyio

from ..peers import Call
from .common import ClosedLoop, percentile

TICK = 0.001
RAMP_S = 0.2  # load runs this long before the heartbeat starts, so it is measured at full throughput


async def heartbeat_lag(call: Call, *, in_flight: int, seconds: float) -> dict[str, Any]:
    """Lag of ``sleep(1 ms)`` beyond its 1 ms (p50, p99, max) over ``seconds`` of load, and that load's rate."""
    load = ClosedLoop(call, in_flight)
    running = True
    lags: list[float] = []
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(load.run, lambda: running)
        await anyio.sleep(RAMP_S)
        completed_before = load.completed
        start = time.perf_counter()
        end = start + seconds
        while (now := time.perf_counter()) < end:
            await anyio.sleep(TICK)
            lags.append(time.perf_counter() - now - TICK)
        tasks_per_s = (load.completed - completed_before) / (time.perf_counter() - start)
        running = False
    return {
        "lag_p50_ms": 1e3 * statistics.median(lags),
        "lag_p99_ms": 1e3 * percentile(lags, 0.99),
        "lag_max_ms": 1e3 * max(lags),
        "ticks": len(lags),
        "tasks_per_s": tasks_per_s,
    }
