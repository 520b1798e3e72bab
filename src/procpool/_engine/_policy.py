"""The scheduling policy, apart from the mechanism: which worker gets a task, how many tasks wait
ahead in a busy worker, when they are taken back, when a worker is recycled.

Pure decisions on numbers and times passed in (no clock of its own, no processes, no event
loop), so that tests drive it with made-up times. `Scheduler` and `WorkerSlot` apply it.
"""

from __future__ import annotations

from typing import Generic, TypeVar

W = TypeVar("W")


class IdleWorkers(Generic[W]):
    """Idle workers, most recently used first: a worker that just finished a task gets the next
    one, so its caches (``functools.cache``, a loaded model) stay warm, and the worker idle the
    longest is the one idle shrinking lets go."""

    def __init__(self) -> None:
        self._stack: list[W] = []  # the most recently idle last

    def __len__(self) -> int:
        return len(self._stack)

    def push(self, worker: W) -> None:
        """``worker`` is idle now: it goes first."""
        self.discard(worker)
        self._stack.append(worker)

    def pop(self) -> W | None:
        """The most recently used idle worker, taken off the list; None if none is idle."""
        return self._stack.pop() if self._stack else None

    def discard(self, worker: W) -> None:
        if worker in self._stack:
            self._stack.remove(worker)

    def coldest(self) -> W | None:
        """The worker idle the longest (left on the list)."""
        return self._stack[0] if self._stack else None


class SchedulingPolicy:
    """How tasks are spread over workers.

    Sending tasks ahead of the running one keeps a worker busy through the round trip, which
    is what makes tiny tasks fast; a task that waits there behind a long one is taken back as
    soon as another worker is idle and nothing else is queued.

    Attributes:
        prefetch_budget: seconds of work, at the recent average task time, to keep queued in a
            busy worker: about one round trip.
        max_ahead: the most tasks in one worker's queue, the running one included.
        short_task: tasks shorter than this on average always get one more sent ahead.
        large_call: a call of more bytes than this goes only to an idle worker, never ahead.
        take_back_after: how long a worker's running task must have run, beyond its usual time,
            before the tasks waiting behind it go to an idle worker.
        memory_check_interval: a worker's memory is read at most this often, after a task.
    """

    prefetch_budget = 0.002
    max_ahead = 256
    short_task = 0.05
    large_call = 64 * 1024
    take_back_after = 0.002
    memory_check_interval = 0.05
    smoothing = 0.2  # weight of the newest sample in the average task time

    def average(self, task_time: float | None, sample: float) -> float:
        """The average task time, with one more task's ``sample``."""
        return sample if task_time is None else task_time + self.smoothing * (sample - task_time)

    def ahead_limit(self, task_time: float | None) -> int:
        """How many tasks a busy worker may hold, the running one included; 1 (none ahead)
        until its task time is known."""
        if task_time is None:
            return 1
        limit = min(1 + int(self.prefetch_budget / max(task_time, 1e-7)), self.max_ahead)
        if task_time < self.short_task:
            limit = max(limit, 2)  # one task ahead hides the round trip at little risk of imbalance
        return limit

    def room_ahead(self, task_time: float | None, in_flight: int) -> int:
        """How many more tasks to send to a worker that holds ``in_flight`` (at least one). Sent
        in batches, once it has run down to half its limit: one write and one wake-up of the
        worker for several tasks."""
        limit = self.ahead_limit(task_time)
        if in_flight > limit // 2:
            return 0
        return limit - in_flight

    def fits_ahead(self, call_size: int, stream: bool) -> bool:
        """Whether a call may wait in a busy worker's queue: not a stream (its items need the
        worker to itself), and not a large call, which would wait there for as long as the task
        ahead runs while an idle worker could have had it at once."""
        return not stream and call_size <= self.large_call

    def take_back_at(self, head_since: float, task_time: float | None) -> float:
        """When the tasks waiting behind a running task that began at ``head_since`` are to be
        taken back, should a worker be idle then with nothing else queued: once it has run
        `take_back_after` longer than the usual task."""
        return head_since + (task_time or 0.0) + self.take_back_after

    def recycle(self, tasks_run: int, max_tasks: int | None) -> bool:
        """Whether a worker has run its share of tasks (``max_tasks_per_worker``)."""
        return max_tasks is not None and tasks_run >= max_tasks

    def memory_due(self, now: float, last_checked: float) -> bool:
        return now - last_checked >= self.memory_check_interval
