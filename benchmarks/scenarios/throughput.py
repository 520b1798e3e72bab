"""B. Many tiny tasks: ``identity`` calls with a fixed number in flight, in tasks per second.

Also the parent process's CPU time per task (every thread of it, so a peer's helper threads count):
the parent's work per task caps throughput at 1 ÷ that on a machine with a core for every worker,
which a machine with fewer cores than workers cannot show by wall time alone.
"""

from __future__ import annotations

import time
from typing import Any

from ..peers import Call
from .common import ClosedLoop


async def tiny_tasks(call: Call, *, tasks: int, in_flight: int) -> dict[str, Any]:
    """Tasks per second for ``tasks`` calls with ``in_flight`` outstanding, after a tenth as many to warm up."""
    await ClosedLoop(call, in_flight).run_tasks(max(in_flight, tasks // 10))
    load = ClosedLoop(call, in_flight)
    start, start_cpu = time.perf_counter(), time.process_time()
    await load.run_tasks(tasks)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    return {
        "tasks_per_s": load.completed / seconds,
        "tasks": load.completed,
        "parent_us_per_task": 1e6 * cpu_seconds / load.completed,
        "parent_cpu_share": cpu_seconds / seconds,
    }
