"""`Backlog`: the tasks waiting for a worker, in submission order.

Idle worker slots wait on it; a busy slot tops up its worker from it without waiting. Tasks a dead
worker had received but not started go back to its front, so they keep their turn.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable

import anyio

from ._job import Job


class BacklogClosed(Exception):
    """The backlog is closed and empty: the slot's work is over."""


class Backlog:
    def __init__(self, on_take: Callable[[], object] | None = None) -> None:
        self._on_take = on_take  # a job left the backlog (``max_queued`` may let a caller in)
        self._tasks: deque[Job] = deque()
        self._waiters: deque[anyio.Event] = deque()
        self._woken = 0  # idle slots woken for a task that have not taken it yet
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def put(self, job: Job) -> None:
        """Queue ``job``; cancelling it takes it out again."""
        job.on_cancel = self.discard
        self._tasks.append(job)
        self._wake_one()

    def put_front(self, jobs: Iterable[Job]) -> None:
        jobs = list(jobs)
        for job in jobs:
            job.on_cancel = self.discard
        self._tasks.extendleft(reversed(jobs))
        for _ in range(len(self._tasks)):
            self._wake_one()

    def discard(self, job: Job) -> None:
        """Drop a task cancelled while waiting (rare, so a linear search is fine)."""
        with contextlib.suppress(ValueError):
            self._tasks.remove(job)

    @property
    def spare(self) -> int:
        """Tasks a busy slot may take ahead: those no idle slot was woken up for."""
        return 0 if self._waiters else max(0, len(self._tasks) - self._woken)

    def peek(self) -> Job | None:
        return self._tasks[0] if self._tasks else None

    def get_nowait(self) -> Job | None:
        return self._take() if self._tasks else None

    async def get(self) -> Job:
        """The next task, waiting for one if needed.

        Raises:
            BacklogClosed: the backlog was closed and every task has been taken.
        """
        while not self._tasks:
            if self._closed:
                raise BacklogClosed
            wakeup = anyio.Event()
            self._waiters.append(wakeup)
            try:
                await wakeup.wait()
            except BaseException:
                if wakeup.is_set():
                    self._woken -= 1
                    self._wake_one()  # pass on the wake-up this waiter will not use
                else:
                    self._waiters.remove(wakeup)
                raise
            self._woken -= 1
        return self._take()

    def _take(self) -> Job:
        job = self._tasks.popleft()
        if self._on_take is not None:
            self._on_take()
        return job

    def close(self) -> None:
        """No more tasks will come: waiting slots finish once the backlog is empty."""
        self._closed = True
        while self._waiters:
            self._wake_one()

    def _wake_one(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()
            self._woken += 1
