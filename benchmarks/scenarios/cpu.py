"""C and I. A batch of pure-Python CPU tasks: all submitted at once, timed until the last result."""

from __future__ import annotations

import time
from typing import Any

import anyio

from .. import workload
from ..peers import Call


async def cpu_batch(call: Call, *, tasks: int, iterations: int) -> dict[str, Any]:
    """Seconds for ``tasks`` concurrent ``spin(iterations)`` calls (speedups are derived in the summary)."""
    results: list[int] = []

    async def one() -> None:
        results.append(await call(workload.spin, iterations))

    start = time.perf_counter()
    async with anyio.create_task_group() as task_group:
        for _ in range(tasks):
            task_group.start_soon(one)
    seconds = time.perf_counter() - start
    if len(results) != tasks or len(set(results)) != 1:  # every task does the same work
        raise AssertionError(f"{len(results)} of {tasks} tasks returned, with results {sorted(set(results))}")
    return {"seconds": seconds, "tasks": tasks}


def serial_batch(*, tasks: int, iterations: int) -> dict[str, Any]:
    """The same batch run one task after another in this process: the speedup's baseline.

    ``seconds`` is the CPU time it took (what it takes on an idle machine), since wall time would
    also count the moments other processes on a busy machine held the CPU; ``wall_s`` is kept too.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(tasks):
        workload.spin(iterations)
    return {"seconds": time.process_time() - start_cpu, "wall_s": time.perf_counter() - start, "tasks": tasks}


def calibrate(task_s: float) -> dict[str, Any]:
    """The ``spin`` iterations that take ``task_s`` seconds of CPU time here (the fastest of a few tries).

    CPU time, not wall time: on a busy machine a wall-clock calibration would shrink every task.
    """
    probe = 300_000
    best = min(_cpu_time_of_spin(probe) for _ in range(5))
    return {"iterations": max(1, round(probe * task_s / best))}


def _cpu_time_of_spin(iterations: int) -> float:
    start = time.process_time()
    workload.spin(iterations)
    return time.process_time() - start
