"""HOL. Head-of-line blocking: do short tasks wait behind a long one while another worker is idle?

On 2 workers, after a warm-up of tiny tasks (so that a pool that sends tasks ahead to busy workers
believes tasks are short), one long ``sleep`` and three short ones are submitted at once, the long
one first, as ``gather(run(nap, LONG), run(nap, SHORT), ...)`` does. The ideal schedule runs every
short task on the worker the long one leaves idle, one after another: the k-th short task done
k x ``short_s`` after they were submitted. The figures are how much later than that they were
done; a short task sent ahead behind the long one is about ``long_s`` late.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import anyio

from .. import workload
from ..peers import Call

WARMUP_TASKS = 50
SHORT_TASKS = 3


async def short_beside_long(call: Call, *, long_s: float, short_s: float) -> dict[str, Any]:
    """How late the short tasks finish against the ideal schedule (max and median, ms); where they ran."""

    async def tiny(i: int) -> None:
        await call(workload.identity, i)

    async with anyio.create_task_group() as task_group:
        for i in range(WARMUP_TASKS):
            task_group.start_soon(tiny, i)
    done: list[tuple[float, int]] = []  # (seconds since submission, pid) of each short task
    long_pid = 0
    arrived = 0

    async def one(start: float) -> None:
        nonlocal arrived, long_pid
        # The first of these tasks to run submits the long call: trio runs a batch of new tasks in
        # either order, and this keeps the long one first on every loop (each call is submitted
        # before its first wait, in the order the tasks run).
        is_long = arrived == 0
        arrived += 1
        pid = await call(workload.probe, long_s if is_long else short_s)
        if is_long:
            long_pid = pid
        else:
            done.append((time.perf_counter() - start, pid))

    start = time.perf_counter()
    async with anyio.create_task_group() as task_group:
        for _ in range(1 + SHORT_TASKS):
            task_group.start_soon(one, start)
    late = [seconds - k * short_s for k, (seconds, _) in enumerate(sorted(done), start=1)]
    return {
        "wait_max_ms": 1e3 * max(late),
        "wait_median_ms": 1e3 * statistics.median(late),
        "shorts_done_ms": 1e3 * max(seconds for seconds, _ in done),
        "shorts_behind_long": sum(pid == long_pid for _, pid in done),
    }
