"""Watching a pool from outside: counters, timing samples, `Pool.stats` and event hooks."""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._task import Task

_SAMPLES = 2048  # recent tasks whose times give the p99
_log = logging.getLogger("procpool")

ExitReason = Literal["crashed", "killed", "recycled", "idle", "closed"]


@dataclass(frozen=True)
class TaskTiming:
    """When a task passed each step, in `time.monotonic` seconds (the same clock in the workers).

    Attributes:
        submitted: handed to the pool.
        sent: written to a worker (the latest try, if its first worker died before starting it).
        started: the worker began to run it.
        finished: the worker finished it.
        received: its result or error reached the parent.

    A step not reached (a task cancelled while queued never starts) is None.
    """

    submitted: float
    sent: float | None
    started: float | None
    finished: float | None
    received: float | None

    @property
    def queue_wait(self) -> float | None:
        """Seconds from submission to the start in a worker."""
        return None if self.started is None else self.started - self.submitted

    @property
    def run_time(self) -> float | None:
        """Seconds the worker spent running it."""
        return None if self.started is None or self.finished is None else self.finished - self.started

    @property
    def total(self) -> float | None:
        """Seconds from submission until the result reached the parent."""
        return None if self.received is None else self.received - self.submitted


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool (`Pool.stats`). Times are seconds, None before any task ran.

    Attributes:
        workers: worker processes the pool is sized for.
        alive: worker processes running now.
        busy: workers running a task.
        idle: workers waiting for one.
        queued: tasks submitted and not started yet.
        running: tasks running now.
        completed: tasks that returned a result.
        failed: tasks that ended with an error (raised in the task, or their worker died).
        cancelled: tasks cancelled before they ended.
        crashed: worker processes that died unexpectedly (not stopped by the pool).
        recycled: worker processes replaced after ``max_tasks_per_worker`` tasks or for going
            over ``max_memory_per_worker``.
        queue_wait_mean: mean time from submission to start, over every task that started.
        queue_wait_p99: its 99th percentile over the last 2048 tasks.
        run_time_mean: mean time a task ran in its worker.
        run_time_p99: its 99th percentile over the last 2048 tasks.
    """

    workers: int
    alive: int
    busy: int
    idle: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int
    crashed: int
    recycled: int
    queue_wait_mean: float | None
    queue_wait_p99: float | None
    run_time_mean: float | None
    run_time_p99: float | None

    def __str__(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.1f} ms"

        return (
            f"{self.completed} completed, {self.failed} failed, {self.cancelled} cancelled; "
            f"{self.alive}/{self.workers} workers ({self.busy} busy), {self.queued} queued; "
            f"{self.crashed} crashed, {self.recycled} recycled; "
            f"queue wait {ms(self.queue_wait_mean)} mean, {ms(self.queue_wait_p99)} p99; "
            f"run time {ms(self.run_time_mean)} mean, {ms(self.run_time_p99)} p99"
        )


@dataclass(frozen=True)
class WorkerStarted:
    """Event: a worker process is ready for tasks."""

    pid: int


@dataclass(frozen=True)
class WorkerExited:
    """Event: a worker process is gone.

    Attributes:
        pid: its process id.
        reason: ``"crashed"`` (died during a task), ``"killed"`` (its task was cancelled or the
            pool torn down), ``"recycled"`` (ran ``max_tasks_per_worker`` tasks or went over
            ``max_memory_per_worker``), ``"idle"`` (stopped by ``idle_timeout``) or ``"closed"``.
        exitcode: its exit status; negative for the signal that ended it.
    """

    pid: int
    reason: ExitReason
    exitcode: int | None


@dataclass(frozen=True)
class TaskStarted:
    """Event: a task was sent to the worker that will run it (`Task.running` is now True)."""

    task: Task[Any]
    pid: int


@dataclass(frozen=True)
class TaskEnded:
    """Event: a task is done; its outcome and ``task.timing`` are final."""

    task: Task[Any]


Event = WorkerStarted | WorkerExited | TaskStarted | TaskEnded
EventHook = Callable[[Event], object]


class PoolObserver:
    """Counts what happens in one pool, keeps recent times, and calls its event hook."""

    def __init__(self, on_event: EventHook | None) -> None:
        self.on_event = on_event
        self.completed = self.failed = self.cancelled = 0
        self.crashed = self.recycled = 0
        self._timed = 0
        self._wait_sum = self._run_sum = 0.0
        self._waits: deque[float] = deque(maxlen=_SAMPLES)
        self._runs: deque[float] = deque(maxlen=_SAMPLES)

    def emit(self, event: Event) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except BaseException:  # a broken hook must not break the pool (SystemExit included)
            _log.exception("procpool: the on_event hook raised on %r", event)

    def task_done(self, task: Task[Any]) -> None:
        if task.cancelled():
            self.cancelled += 1
        elif task._exception is not None:
            self.failed += 1
        else:
            self.completed += 1
        job = task._job  # its times, without a call
        submitted, started, finished = job.submitted_at, job.started_at, job.finished_at
        if started is not None and finished is not None:
            wait, run = started - submitted, finished - started
            self._timed += 1
            self._wait_sum += wait
            self._run_sum += run
            self._waits.append(wait)
            self._runs.append(run)
        if self.on_event is not None:
            self.emit(TaskEnded(task))

    def worker_exited(self, pid: int, reason: ExitReason, exitcode: int | None) -> None:
        if reason == "crashed":
            self.crashed += 1
        elif reason == "recycled":
            self.recycled += 1
        if self.on_event is not None:
            self.emit(WorkerExited(pid, reason, exitcode))

    def stats(self, *, workers: int, alive: int, busy: int, queued: int) -> PoolStats:
        timed = self._timed
        return PoolStats(
            workers=workers,
            alive=alive,
            busy=busy,
            idle=alive - busy,
            queued=queued,
            running=busy,
            completed=self.completed,
            failed=self.failed,
            cancelled=self.cancelled,
            crashed=self.crashed,
            recycled=self.recycled,
            queue_wait_mean=self._wait_sum / timed if timed else None,
            queue_wait_p99=_p99(self._waits),
            run_time_mean=self._run_sum / timed if timed else None,
            run_time_p99=_p99(self._runs),
        )


def _p99(samples: Sequence[float]) -> float | None:
    """Nearest-rank 99th percentile: a time that was really measured."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
