"""`Deadlines`: ends tasks whose ``timeout`` (queue time included) has passed.

One background task for the whole pool sleeps until the earliest deadline; a task that is still
queued then never starts, and a running one is stopped as a cancel would stop it. Either way it
ends with `TimeoutError`. Tasks without a timeout never meet this module.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from ._job import Job

_COMPACT_MIN = 256  # below this many entries, finished tasks are left in the heap until their time


class Deadlines:
    def __init__(self, start_soon: Callable[[Callable[[], Coroutine[Any, Any, None]]], object]) -> None:
        self._start_soon = start_soon
        self._heap: list[tuple[float, int, float, Job]] = []
        self._order = itertools.count()  # ties: first come, first expired; jobs are never compared
        self._live = 0  # jobs in the heap that have not settled
        self._sleep: anyio.CancelScope | None = None
        self._started = False
        self._stopped = False

    def add(self, job: Job, deadline: float, timeout: float) -> None:
        """End ``job`` with `TimeoutError` if it is not done at ``deadline`` (``anyio.current_time()``).

        A job lets go of its handle and result when it settles, so what stays in the heap until
        its deadline (or the next compaction) is only the job's empty record."""
        if not self._started:
            self._started = True
            self._start_soon(self._run)
        assert job.task is not None
        heapq.heappush(self._heap, (deadline, next(self._order), timeout, job))
        self._live += 1
        job.task.add_done_callback(self._task_done)
        if self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline

    def _task_done(self, _: object) -> None:
        self._live -= 1
        heap = self._heap
        # Finished tasks stay in the heap until their deadline; drop them once they are most of it.
        if len(heap) > _COMPACT_MIN and len(heap) > 2 * self._live:
            self._heap = [entry for entry in heap if not entry[3].settled]
            heapq.heapify(self._heap)

    def stop(self) -> None:
        """The pool has stopped: end the background task."""
        self._stopped = True
        if self._sleep is not None:
            self._sleep.cancel()

    async def _run(self) -> None:
        while not self._stopped:
            now = anyio.current_time()
            # `self._heap` is read anew each time: expiring a task may compact it (`_task_done`).
            while self._heap and self._heap[0][0] <= now:
                _, _, timeout, job = heapq.heappop(self._heap)
                job.expire(timeout)
            with anyio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf) as self._sleep:
                await anyio.sleep_forever()
            self._sleep = None
