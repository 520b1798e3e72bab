"""The scheduling policy and the scheduler's decisions, driven with made-up times and fake slots:
no processes, no event loop. What a pool does with them end to end is in test_scheduling.py."""

from __future__ import annotations

import math

from procpool._core import Backlog, Job
from procpool._engine._policy import IdleWorkers, SchedulingPolicy
from procpool._engine._scheduler import Scheduler


def _job(job_id: int, args: bytes = b"x") -> Job:
    return Job(job_id, "f", b"fn", args, kill_on_cancel=True)


class FakeSlot:
    """A slot as the scheduler sees it: what it was given, and made-up take-back times."""

    def __init__(self, name: str, *, due: float | None = None) -> None:
        self.name = name
        self.sent: list[list[int]] = []
        self.due = due
        self.taken_back = 0
        self.woken = 0

    def __repr__(self) -> str:
        return self.name

    def dispatch(self, jobs: list[Job]) -> None:
        self.sent.append([job.id for job in jobs])

    def jobs_ahead(self, head: Job, in_flight: int) -> list[Job]:
        return []

    def take_back_due(self) -> float | None:
        return self.due

    def take_back(self) -> None:
        self.taken_back += 1
        self.due = None

    def wake(self) -> None:
        self.woken += 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- which worker -----------------------------------------------------------------------------


def test_the_most_recently_idle_worker_goes_first_and_the_coldest_is_kept_last() -> None:
    idle: IdleWorkers[str] = IdleWorkers()
    for worker in ("a", "b", "c"):
        idle.push(worker)
    assert idle.coldest() == "a"
    assert idle.pop() == "c"
    idle.push("a")  # idle again: now the most recent
    assert idle.coldest() == "b"
    assert idle.pop() == "a"
    assert idle.pop() == "b"
    assert idle.pop() is None
    assert idle.coldest() is None


def test_consecutive_tasks_on_an_idle_pool_go_to_one_worker() -> None:
    scheduler = Scheduler(Backlog(), SchedulingPolicy())
    slots = [FakeSlot(name) for name in "abcd"]
    for slot in slots:
        scheduler.add(slot)
        scheduler.slot_idle(slot)
    for job_id in range(1, 6):
        scheduler.submit(_job(job_id))
        scheduler.slot_idle(slots[-1])  # its result came back: idle again
    assert slots[-1].sent == [[1], [2], [3], [4], [5]]
    assert [slot.sent for slot in slots[:-1]] == [[], [], []]


# -- sending ahead ------------------------------------------------------------------------------


def test_how_many_tasks_wait_in_a_busy_worker() -> None:
    policy = SchedulingPolicy()
    assert policy.ahead_limit(None) == 1  # task time unknown: nothing ahead
    assert policy.ahead_limit(0.000_001) == policy.max_ahead  # tiny tasks: many, up to the cap
    assert policy.ahead_limit(policy.prefetch_budget / 5) == 6  # the budget's worth, and the running one
    assert policy.ahead_limit(0.01) == 2  # short: one ahead hides the round trip
    assert policy.ahead_limit(1.0) == 1  # long: none ahead


def test_tasks_are_sent_ahead_in_batches_once_half_have_run() -> None:
    policy = SchedulingPolicy()
    task_time = policy.prefetch_budget / 10
    limit = policy.ahead_limit(task_time)
    assert limit == 11
    assert policy.room_ahead(task_time, 1) == 10
    assert policy.room_ahead(task_time, limit // 2) == limit - limit // 2
    assert policy.room_ahead(task_time, limit // 2 + 1) == 0


def test_large_calls_and_streams_never_wait_behind_another_task() -> None:
    policy = SchedulingPolicy()
    assert policy.fits_ahead(policy.large_call, stream=False)
    assert not policy.fits_ahead(policy.large_call + 1, stream=False)
    assert not policy.fits_ahead(10, stream=True)


def test_a_task_goes_to_an_idle_worker_else_waits_for_a_busy_one_to_take_it() -> None:
    backlog = Backlog()
    scheduler = Scheduler(backlog, SchedulingPolicy())
    busy, idle = FakeSlot("busy"), FakeSlot("idle")
    scheduler.add(busy)
    scheduler.add(idle)
    scheduler.slot_idle(idle)
    scheduler.submit(_job(1))
    scheduler.submit(_job(2))  # none idle now: queued, for a busy worker to take with its results
    assert idle.sent == [[1]]
    assert busy.sent == []
    assert len(backlog) == 1


def test_with_no_worker_idle_a_task_waits_in_the_backlog_for_the_next_idle_worker() -> None:
    backlog = Backlog()
    scheduler = Scheduler(backlog, SchedulingPolicy())
    slot = FakeSlot("a")
    scheduler.add(slot)
    scheduler.submit(_job(1))
    assert len(backlog) == 1
    assert slot.sent == []
    scheduler.slot_idle(slot)
    assert slot.sent == [[1]]
    assert len(backlog) == 0


# -- taking back --------------------------------------------------------------------------------


def test_waiting_tasks_are_taken_back_once_the_running_one_has_run_long() -> None:
    policy = SchedulingPolicy()
    due = policy.take_back_at(head_since=10.0, task_time=0.001)
    assert due == 10.0 + 0.001 + policy.take_back_after
    assert policy.take_back_at(head_since=10.0, task_time=None) == 10.0 + policy.take_back_after


def test_take_back_waits_for_an_idle_worker_and_an_empty_backlog() -> None:
    clock = FakeClock()
    backlog = Backlog()
    scheduler = Scheduler(backlog, SchedulingPolicy(), clock=clock)
    busy, other = FakeSlot("busy", due=clock.now + 0.5), FakeSlot("other")
    scheduler.add(busy)
    scheduler.add(other)
    clock.now += 1.0
    assert scheduler.take_back_now() == math.inf  # due, but no worker is idle to take them
    assert busy.taken_back == 0
    scheduler.slot_idle(other)
    backlog.put(_job(1))
    assert scheduler.take_back_now() == math.inf  # a worker is idle, but other work is queued
    assert busy.taken_back == 0
    backlog.get_nowait()
    assert scheduler.take_back_now() == math.inf
    assert busy.taken_back == 1


def test_take_back_is_looked_at_again_when_it_falls_due() -> None:
    clock = FakeClock()
    scheduler = Scheduler(Backlog(), SchedulingPolicy(), clock=clock)
    busy, idle = FakeSlot("busy", due=clock.now + 0.002), FakeSlot("idle")
    scheduler.add(busy)
    scheduler.add(idle)
    scheduler.slot_idle(idle)
    assert scheduler.take_back_now() == clock.now + 0.002  # not yet: the running task is young
    assert busy.taken_back == 0
    clock.now += 0.002
    scheduler.take_back_now()
    assert busy.taken_back == 1


# -- recycling ----------------------------------------------------------------------------------


def test_a_worker_is_recycled_after_its_share_and_its_memory_read_at_intervals() -> None:
    policy = SchedulingPolicy()
    assert not policy.recycle(9, 10)
    assert policy.recycle(10, 10)
    assert not policy.recycle(10**9, None)
    assert not policy.memory_due(now=1.0, last_checked=1.0 - policy.memory_check_interval / 2)
    assert policy.memory_due(now=1.0, last_checked=1.0 - policy.memory_check_interval)
