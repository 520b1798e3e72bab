"""`Scheduler`: hands each task to a worker slot as the policy says, at once when one is idle.

A submitted task goes straight to the most recently used idle slot, written to its worker from
the submitting coroutine, with no task switch; when no slot is idle it waits in the backlog, and
a slot takes from there as results free its worker. A slot that has no worker (it idled out,
or its worker is being replaced) is woken to start one when tasks wait.

Tasks sent ahead to a busy worker are taken back, with that worker's acknowledgement, when
another slot is idle with nothing queued and the running task has run long (see
`SchedulingPolicy.take_back_at`); a timer task looks again when that time comes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import anyio

from .._core import Backlog, Job
from ._policy import IdleWorkers, SchedulingPolicy


class Slot(Protocol):
    """What the scheduler needs of a worker slot."""

    def dispatch(self, jobs: list[Job]) -> None:
        """Send ``jobs`` to the slot's idle worker, the first one to run at once."""

    def jobs_ahead(self, head: Job, in_flight: int) -> list[Job]:
        """Jobs from the backlog to send behind ``head``."""

    def take_back_due(self) -> float | None:
        """When the tasks waiting in this slot's worker should be taken back; None if none wait."""

    def take_back(self) -> None:
        """Ask the worker to give back the tasks waiting behind the running one."""

    def wake(self) -> None:
        """Wake the slot's control task (to start a worker, or to stop)."""


class Scheduler:
    def __init__(self, backlog: Backlog, policy: SchedulingPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.backlog = backlog
        self.policy = policy
        self._clock = clock
        self._idle: IdleWorkers[Slot] = IdleWorkers()
        self._slots: list[Slot] = []
        self._dormant: list[Slot] = []  # slots without a worker, started when tasks wait
        self._rebalance: anyio.Event | None = None  # wakes `rebalance`, while it waits
        self._closed = False

    def add(self, slot: Slot) -> None:
        self._slots.append(slot)

    # -- tasks in ---------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        slot = self._idle.pop()
        if slot is not None:
            slot.dispatch([job])
            return
        # Busy workers take it from here, ahead of their running task, as their results come:
        # in batches, where sending each task ahead as it came made one write per task to one of
        # many workers (some 5 µs of the parent's CPU per task with 15 workers, measured).
        self.backlog.put(job)
        if self._dormant:
            self._wake_dormant()

    def put_front(self, jobs: Iterable[Job]) -> None:
        """Jobs that must keep their turn (their worker died or gave them back)."""
        self.backlog.put_front(jobs)
        while len(self.backlog) and (slot := self._idle.pop()) is not None:
            self.slot_idle(slot)
        self._wake_dormant()

    # -- what slots say ---------------------------------------------------------------------------

    def slot_idle(self, slot: Slot) -> None:
        """``slot``'s worker has nothing to run: give it the next job, or list it as idle."""
        job = self.backlog.get_nowait()
        if job is not None:
            slot.dispatch([job, *slot.jobs_ahead(job, 1)])
            return
        if self._closed:
            slot.wake()  # nothing more will come: it may stop
            return
        self._idle.push(slot)
        if self._rebalance is not None and any(other.take_back_due() is not None for other in self._slots):
            self._rebalance.set()  # tasks wait in a busy worker: see when to take them back

    def slot_unavailable(self, slot: Slot) -> None:
        """``slot`` takes no task now: its worker is busy elsewhere, stopping, or gone."""
        self._idle.discard(slot)

    def slot_dormant(self, slot: Slot) -> None:
        """``slot`` has no worker; it starts one when woken."""
        self._idle.discard(slot)
        if slot not in self._dormant:
            self._dormant.append(slot)
        if len(self.backlog):
            self._wake_dormant()

    def coldest_idle(self) -> Slot | None:
        return self._idle.coldest()

    def _wake_dormant(self) -> None:
        """Wake one slot without a worker to start one (it goes dormant again if it finds no task)."""
        if self._dormant:
            self._dormant.pop(0).wake()

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """No more tasks come: idle slots stop (busy ones once the backlog is empty)."""
        self._closed = True
        self.backlog.close()
        for slot in self._slots:
            slot.wake()
        if self._rebalance is not None:
            self._rebalance.set()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- taking back ------------------------------------------------------------------------------

    async def rebalance(self) -> None:
        """Take back tasks waiting behind long ones when a worker is idle; runs until closed."""
        while not self._closed:
            due = self.take_back_now()
            self._rebalance = wakeup = anyio.Event()
            with anyio.move_on_after(due - self._clock() if due < math.inf else math.inf):
                await wakeup.wait()
            self._rebalance = None

    def take_back_now(self) -> float:
        """Take back what is due; when to look again (infinity: when something changes)."""
        if not self._idle or len(self.backlog):
            return math.inf
        now = self._clock()
        next_due = math.inf
        for slot in self._slots:
            due = slot.take_back_due()
            if due is None:
                continue
            if due <= now:
                slot.take_back()
            else:
                next_due = min(next_due, due)
        return next_due
