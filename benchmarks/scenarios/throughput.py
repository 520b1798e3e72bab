"""B. Many tiny tasks: ``identity`` calls with a fixed number in flight, in tasks per second."""

from __future__ import annotations

import time
from typing import Any

from ..peers import Call
from .common import ClosedLoop


async def tiny_tasks(call: Call, *, tasks: int, in_flight: int) -> dict[str, Any]:
    """Tasks per second for ``tasks`` calls with ``in_flight`` outstanding, after a tenth as many to warm up."""
    await ClosedLoop(call, in_flight).run_tasks(max(in_flight, tasks // 10))
    load = ClosedLoop(call, in_flight)
    start = time.perf_counter()
    await load.run_tasks(tasks)
    seconds = time.perf_counter() - start
    return {"tasks_per_s": load.completed / seconds, "tasks": load.completed}
