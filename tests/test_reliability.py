"""Overload protection, deadlines, retries and healing, under asyncio, uvloop and trio."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

import procpool
import workfns

pytestmark = pytest.mark.anyio


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _worker_count() -> int:
    """Live worker processes of this test (forkserver children, so not our direct children)."""
    me = os.getpid()
    count = 0
    for child in psutil.Process(me).children(recursive=True):
        try:
            if child.ppid() != me and child.status() != psutil.STATUS_ZOMBIE:
                count += 1
        except psutil.NoSuchProcess:
            continue
    return count


async def _collect(awaitable: Any, into: list[Any]) -> None:
    into.append(await awaitable)


async def _until_running(task: procpool.Task[Any]) -> None:
    with anyio.fail_after(5):
        while not task.running():
            await anyio.sleep(0.005)


# -- max_queued ----------------------------------------------------------------------------------


async def test_submit_raises_pool_full_and_run_waits_for_room() -> None:
    async with procpool.Pool(1, max_queued=2) as pool:
        running = pool.submit(workfns.sleep_and_return, 0.3, "first")
        await _until_running(running)
        queued = [pool.submit(workfns.square, i) for i in range(2)]
        assert pool.queued == 2
        with pytest.raises(procpool.PoolFullError, match="max_queued=2"):
            pool.submit(workfns.square, 9)
        with pytest.raises(procpool.PoolFullError):
            pool.stream(workfns.count_up, 3)
        started = time.monotonic()
        # Waits until the first task ends and a queued one starts, then runs.
        assert await pool.run(workfns.square, 5) == 25
        assert time.monotonic() - started > 0.1
        assert await running == "first"
        assert [await task for task in queued] == [0, 1]


async def test_waiters_get_room_in_turn_and_a_cancelled_waiter_passes_it_on() -> None:
    async with procpool.Pool(1, max_queued=1) as pool:
        blocker = pool.submit(workfns.sleep_and_return, 0.3)
        await _until_running(blocker)
        filler = pool.submit(workfns.square, 0)
        started: list[tuple[float, int]] = []

        async def call(i: int) -> None:
            # Ordered by when the worker started each call: results that arrive together may
            # wake their callers in any order (trio shuffles), so the callers' order proves nothing.
            started.append(await pool.run(workfns.start_time_and, i))

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(call, i)
                await anyio.sleep(0.01)  # they queue in this order
            with anyio.move_on_after(0.05):
                await pool.run(workfns.identity, 99)  # gives up while waiting: never runs
            with pytest.raises(procpool.PoolFullError):
                pool.submit(workfns.square, 1)  # no jumping the queue of waiters
        assert [i for _, i in sorted(started)] == [0, 1, 2, 3]
        await blocker
        await filler


async def test_map_and_executor_respect_max_queued() -> None:
    async with procpool.Pool(2, max_queued=3) as pool:
        assert await pool.map(workfns.square, range(40), max_in_flight=10) == [i * i for i in range(40)]
        blocker = [pool.submit(workfns.sleep_and_return, 0.3) for _ in range(2)]
        with anyio.fail_after(5):
            while pool.queued:
                await anyio.sleep(0.01)
        fillers = [pool.submit(workfns.square, i) for i in range(3)]

        def from_thread() -> None:
            with pytest.raises(procpool.PoolFullError):
                pool.executor.submit(workfns.square, 1)

        await anyio.to_thread.run_sync(from_thread)
        await blocker[0]
        await blocker[1]
        assert [await task for task in fillers] == [0, 1, 4]


async def test_closing_wakes_waiters_with_pool_closed_error() -> None:
    async with procpool.Pool(1, max_queued=1) as pool:
        await _until_running(pool.submit(workfns.sleep_and_return, 0.2))
        pool.submit(workfns.square, 1)
        outcome: list[BaseException] = []

        async def waiter() -> None:
            try:
                await pool.run(workfns.square, 2)
            except procpool.PoolClosedError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            await pool.aclose()
        assert len(outcome) == 1


# -- timeout (deadline) --------------------------------------------------------------------------


async def test_timeout_drops_a_task_that_expires_in_the_queue(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    async with procpool.Pool(1) as pool:
        blocker = pool.submit(workfns.sleep_and_return, 0.4)
        late = pool.options(timeout=0.1).submit(workfns.touch_after, str(marker), 0)
        with pytest.raises(TimeoutError, match=r"0\.1 s timeout"):
            await late
        assert not late.cancelled()
        assert isinstance(late.exception(), TimeoutError)
        assert blocker.running()  # the deadline came before the worker was free
        await blocker
        assert await pool.run(workfns.square, 3) == 9
    assert not marker.exists()


async def test_timeout_kills_a_running_task() -> None:
    async with procpool.Pool(1) as pool:
        pid = await pool.run(workfns.getpid)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await pool.options(timeout=0.2).run(workfns.sleep_and_return, 30)
        assert time.monotonic() - started < 5
        assert _gone(pid)
        assert await pool.run(workfns.square, 4) == 16


async def test_timeout_counts_the_wait_for_room_and_reaches_the_executor() -> None:
    async with procpool.Pool(1, max_queued=1) as pool:
        await _until_running(pool.submit(workfns.sleep_and_return, 0.5))
        pool.submit(workfns.square, 1)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await pool.options(timeout=0.1).run(workfns.square, 2)  # never got room
        assert time.monotonic() - started < 0.45
    async with procpool.Pool(1) as pool:
        task = pool.options(timeout=0.1, kill_on_cancel=False).submit(workfns.sleep_and_return, 0.3, "late")
        with pytest.raises(TimeoutError):
            await task
        assert await pool.run(workfns.square, 2) == 4  # same worker, once it finished


# -- retries and poison tasks --------------------------------------------------------------------


async def test_retries_rerun_a_task_whose_worker_died(tmp_path: Path) -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(procpool.WorkerCrashedError):
            await pool.run(workfns.kill_self_unless, str(tmp_path / "a"), "a")
        assert await pool.options(retries=1).run(workfns.kill_self_unless, str(tmp_path / "b"), "b") == "b"
        # Exceptions the function raises are not retried.
        with pytest.raises(ValueError, match="once"):
            await pool.options(retries=3).run(workfns.raise_value_error, "once")


async def test_a_task_that_keeps_killing_workers_is_a_poison_task() -> None:
    async with procpool.Pool(1, max_crashes_per_task=2) as pool:
        with pytest.raises(procpool.PoisonTaskError) as info:
            await pool.options(retries=10).run(workfns.kill_self)
        assert isinstance(info.value, procpool.WorkerCrashedError)
        assert info.value.crashes == 2
        assert info.value.signal_name == "SIGKILL"
        assert "2 times in a row" in str(info.value)
        assert await pool.run(workfns.square, 5) == 25


async def test_retries_refused_for_streams() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(ValueError, match="stream"):
            pool.options(retries=1).stream(workfns.count_up, 3)


# -- healing -------------------------------------------------------------------------------------


async def test_failing_initializer_after_start_fails_pending_and_new_tasks_fast(tmp_path: Path) -> None:
    flag = tmp_path / "refuse"
    async with procpool.Pool(1, initializer=workfns.fail_initializer_if, initargs=(str(flag),)) as pool:
        assert await pool.run(workfns.square, 2) == 4
        flag.touch()
        crashing = pool.submit(workfns.kill_self)
        pending = [pool.submit(workfns.square, i) for i in range(5)]
        with pytest.raises(procpool.WorkerCrashedError):
            await crashing
        for task in pending:
            with pytest.raises(procpool.InitializerError) as info:
                await task
            assert "initializer refused" in str(info.value.__cause__)
            assert "fail_initializer_if" in str(info.value.__cause__.__cause__)  # the child's traceback
        started = time.monotonic()
        with pytest.raises(procpool.InitializerError):
            pool.submit(workfns.square, 1)
        with pytest.raises(procpool.InitializerError):
            await pool.run(workfns.square, 1)
        assert time.monotonic() - started < 0.5


async def test_max_memory_per_worker_recycles_a_worker_over_it() -> None:
    async with procpool.Pool(1, max_memory_per_worker=200 * 2**20) as pool:
        pid = await pool.run(workfns.getpid)
        assert await pool.run(workfns.hold_memory, 1024, 0.06) == pid  # small: kept
        assert await pool.run(workfns.hold_memory, 300 * 2**20, 0.06) == pid
        with anyio.fail_after(5):
            assert await pool.run(workfns.getpid) != pid
        assert _gone(pid)


async def test_idle_workers_stop_down_to_min_workers_and_come_back() -> None:
    async with procpool.Pool(3, idle_timeout=0.2, min_workers=1) as pool:
        assert await pool.map(workfns.sleep_and_return, [0.05] * 6) == [None] * 6
        assert _worker_count() == 3
        with anyio.fail_after(5):
            while _worker_count() > 1:
                await anyio.sleep(0.05)
        await anyio.sleep(0.4)
        assert _worker_count() == 1  # the floor stays
        # A burst brings the workers back. One may idle out again before the burst ends, when
        # the others took its task while it started (a loaded machine), so the count is watched.
        most = 1
        results: list[Any] = []
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_collect, pool.map(workfns.sleep_and_return, [0.2] * 3, [1, 2, 3]), results)
            while not results:
                most = max(most, _worker_count())
                await anyio.sleep(0.01)
        assert results == [[1, 2, 3]]
        assert most == 3


async def test_recycling_keeps_results_right_with_tasks_sent_ahead() -> None:
    async with procpool.Pool(2, max_tasks_per_worker=7) as pool:
        assert await pool.map(workfns.square, range(500)) == [i * i for i in range(500)]
        pids = {await pool.run(workfns.getpid) for _ in range(20)}
        assert len(pids) >= 3


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_queued": 0}, ValueError, "max_queued"),
        ({"max_queued": 1.5}, ValueError, "max_queued"),
        ({"max_memory_per_worker": -1}, ValueError, "max_memory_per_worker"),
        ({"max_crashes_per_task": 0}, ValueError, "max_crashes_per_task"),
        ({"max_crashes_per_task": None}, ValueError, "max_crashes_per_task"),
        ({"idle_timeout": 0}, ValueError, "idle_timeout"),
        ({"idle_timeout": "1"}, TypeError, "idle_timeout"),
        ({"min_workers": -1}, ValueError, "min_workers"),
        ({"min_workers": 1.0}, TypeError, "min_workers"),
    ],
)
def test_bad_pool_options(options: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        procpool.Pool(1, **options)


async def test_bad_call_options() -> None:
    async with procpool.Pool(1) as pool:
        for options, error in [
            ({"timeout": 0}, ValueError),
            ({"timeout": float("nan")}, ValueError),
            ({"timeout": "5"}, TypeError),
            ({"retries": -1}, ValueError),
            ({"retries": 1.0}, TypeError),
            ({"retries": True}, TypeError),
        ]:
            with pytest.raises(error):
                pool.options(**options)
        assert await pool.options(timeout=5, retries=2).run(workfns.square, 3) == 9
