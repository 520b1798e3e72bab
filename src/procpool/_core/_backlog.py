"""`Backlog`: the tasks waiting for a worker, in submission order.

Tasks wait here while no worker can take them: a worker slot takes the next one as its worker
frees up, or sends several ahead of the running one (`LocalBackend`); `InlinePool` waits on it.
Tasks a dead worker had received but not started go back to its front, so they keep their turn.

Cancelling a waiting task costs O(1): the task stays where it is, settled, and is dropped when it
reaches the front. Searching the queue for it instead made cancelling n tasks O(n²) (issue 14:
40,000 cancels held the event loop for 23.6 s).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import anyio

from ._job import Job, Stage

_SETTLED = Stage.SETTLED  # a global: on Python 3.11 an enum member's lookup is slow (see `_job`)
_COMPACT_MIN = 1024  # cancelled tasks left in the queue before `put` sweeps them out


class BacklogClosed(Exception):
    """The backlog is closed and empty: the slot's work is over."""


class Backlog:
    def __init__(self, on_take: Callable[[], object] | None = None) -> None:
        self._on_take = on_take  # a job left the backlog (``max_queued`` may let a caller in)
        self._tasks: deque[Job] = deque()  # waiting jobs, and settled ones not dropped yet
        self.waiting = 0  # how many wait (`len`, without a Python call)
        self._waiters: deque[anyio.Event] = deque()
        self._woken = 0  # waiters woken for a task that have not taken it yet
        self._closed = False
        self._cancel_waiting = self.discard  # every job put gets it: bound once, not per job

    def __len__(self) -> int:
        return self.waiting

    def put(self, job: Job) -> None:
        """Queue ``job``; cancelling it takes it out again."""
        tasks = self._tasks
        # While no worker takes tasks, cancelled ones would pile up behind the first waiting one:
        # sweep them out once they outnumber the waiting ones (amortised O(1) per cancel).
        if len(tasks) > 2 * self.waiting + _COMPACT_MIN:
            self._tasks = tasks = deque(waiting for waiting in tasks if not waiting.settled)
        job.on_cancel = self._cancel_waiting
        tasks.append(job)
        self.waiting += 1
        if self._waiters:
            self._wake_one()

    def put_front(self, jobs: Iterable[Job]) -> None:
        jobs = [job for job in jobs if not job.settled]  # one settled meanwhile is not waiting
        for job in jobs:
            job.on_cancel = self._cancel_waiting
        self._tasks.extendleft(reversed(jobs))
        self.waiting += len(jobs)
        for _ in range(self.waiting):
            self._wake_one()

    def discard(self, job: Job) -> None:
        """Drop a task cancelled while waiting (its ``on_cancel``, called once, just before it
        settles): it stops counting now, and leaves the queue when it reaches the front."""
        self.waiting -= 1

    def peek(self) -> Job | None:
        tasks = self._tasks
        while tasks and tasks[0].settled:
            tasks.popleft()  # cancelled while waiting
        return tasks[0] if tasks else None

    def take_ahead(self, most: int, fits: Callable[[Job], bool], small: int) -> list[Job]:
        """Up to ``most`` waiting jobs from the front, in turn, stopping at the first one that
        ``fits`` refuses (it stays first). ``fits`` is asked only of streams and of calls over
        ``small`` bytes (`Job.size`): one call for a batch of tiny tasks, not one per task."""
        tasks = self._tasks
        taken: list[Job] = []
        while len(taken) < most and tasks:
            job = tasks[0]
            if job.stage is _SETTLED:
                tasks.popleft()  # cancelled while waiting
                continue
            if (job.size > small or job.stream is not None) and not fits(job):
                break
            tasks.popleft()
            job.on_cancel = None  # its taker sets its own; until then a cancel only settles it
            taken.append(job)
        self.waiting -= len(taken)
        if self._on_take is not None:
            for _ in taken:
                self._on_take()
        return taken

    def get_nowait(self) -> Job | None:
        return None if self.peek() is None else self._take()

    async def get(self) -> Job:
        """The next task, waiting for one if needed.

        Raises:
            BacklogClosed: the backlog was closed and every task has been taken.
        """
        while self.peek() is None:
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
        """Take the front job, which `peek` has just found waiting."""
        job = self._tasks.popleft()
        job.on_cancel = None  # its taker sets its own; until then a cancel only settles it
        self.waiting -= 1
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
