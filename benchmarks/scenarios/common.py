"""What several scenarios share: warming a pool up, a closed-loop load, worker memory."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import anyio
import psutil

from .. import workload
from ..peers import Call

PROBE_DELAY = 0.002  # seconds a probe keeps its worker busy, so the next probe goes to another worker
MAX_PROBE_ROUNDS = 200


async def warm_up(call: Call, workers: int) -> list[int]:
    """Run rounds of ``workers`` concurrent probes until every worker has answered one.

    Returns:
        the workers' pids.

    Raises:
        RuntimeError: fewer than ``workers`` distinct workers answered after many rounds.
    """
    pids: set[int] = set()

    async def one_probe() -> None:
        pids.add(await call(workload.probe, PROBE_DELAY))

    for _ in range(MAX_PROBE_ROUNDS):
        async with anyio.create_task_group() as task_group:
            for _ in range(workers):
                task_group.start_soon(one_probe)
        if len(pids) >= workers:
            return sorted(pids)
    raise RuntimeError(f"only {len(pids)} of {workers} workers answered {MAX_PROBE_ROUNDS} rounds of probes")


class ClosedLoop:
    """``in_flight`` callers that each await ``identity`` calls one after another: a steady load.

    Attributes:
        completed: calls finished so far (each result checked).
    """

    def __init__(self, call: Call, in_flight: int) -> None:
        self._call = call
        self._in_flight = in_flight
        self.completed = 0

    async def run(self, more: Callable[[], bool]) -> None:
        """Keep ``in_flight`` calls outstanding while ``more()`` says to issue another."""

        async def caller(first: int) -> None:
            i = first
            while more():
                if await self._call(workload.identity, i) != i:
                    raise AssertionError(f"identity({i}) returned something else")
                self.completed += 1
                i += self._in_flight

        async with anyio.create_task_group() as task_group:
            for first in range(self._in_flight):
                task_group.start_soon(caller, first)

    async def run_tasks(self, total: int) -> None:
        """Issue ``total`` calls in all, ``in_flight`` at a time."""
        issued = 0

        def more() -> bool:
            nonlocal issued
            issued += 1
            return issued <= total

        await self.run(more)


def worker_memory(pids: Sequence[int]) -> dict[str, float]:
    """Mean resident (RSS) and unique (USS, not shared with other processes) memory of the workers, in MB."""
    infos = [psutil.Process(pid).memory_full_info() for pid in pids]
    return {
        "rss_mb": statistics.fmean(info.rss for info in infos) / 1e6,
        "uss_mb": statistics.fmean(info.uss for info in infos) / 1e6,
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]
