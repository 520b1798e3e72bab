"""Core behaviour of procpool.Pool, under asyncio, uvloop and trio."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.lowlevel
import psutil
import pytest

import procpool
import workfns

pytestmark = pytest.mark.anyio


# -- what can be called ------------------------------------------------------------------------


async def test_run_returns_result_and_passes_kwargs() -> None:
    async with procpool.Pool(2) as pool:
        assert await pool.run(workfns.square, 7) == 49
        assert await pool.run(workfns.add, 1, b=2, scale=10) == 30


async def test_lambda_closure_partial_bound_method_and_async_function() -> None:
    offset = 5

    def closure(x: int) -> int:
        return x + offset

    async with procpool.Pool(2) as pool:
        assert await pool.run(lambda x: x * 3, 4) == 12
        assert await pool.run(closure, 1) == 6
        assert await pool.run(functools.partial(workfns.add, 2, scale=3), 1) == 9
        assert await pool.run(workfns.Multiplier(4).times, 5) == 20
        assert await pool.run(workfns.async_square, 6) == 36


async def test_closure_over_changed_value_is_sent_again() -> None:
    """The worker caches functions by their pickled content, so a changed closure is not stale."""
    async with procpool.Pool(1) as pool:
        results = []
        for value in range(3):
            results.append(await pool.run(lambda: value))  # noqa: B023 - the point of the test
        assert results == [0, 1, 2]


async def test_tasks_run_in_other_processes_at_the_same_time(tmp_path: Path) -> None:
    async with procpool.Pool(2) as pool:
        pids = {await pool.run(workfns.getpid) for _ in range(4)}
        assert os.getpid() not in pids
        # Each task waits for the other: only two workers running at once can both see it.
        a = pool.submit(workfns.rendezvous, str(tmp_path), "a", "b", 10)
        b = pool.submit(workfns.rendezvous, str(tmp_path), "b", "a", 10)
        assert await a
        assert await b


# -- errors and crashes ------------------------------------------------------------------------


async def test_child_exception_keeps_its_type_and_traceback() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(ValueError, match="nope") as info:
            await pool.run(workfns.raise_value_error, "nope")
        cause = info.value.__cause__
        assert isinstance(cause, procpool.RemoteTraceback)
        assert "raise_value_error" in cause.traceback_text
        assert "workfns.py" in str(cause)


@pytest.mark.parametrize(
    ("fn", "args", "signal_name", "exitcode"),
    [
        pytest.param(workfns.exit_hard, (7,), None, 7, id="os._exit"),
        pytest.param(workfns.kill_self, (), "SIGKILL", -signal.SIGKILL, id="sigkill"),
        pytest.param(workfns.segfault, (), "SIGSEGV", -signal.SIGSEGV, id="segfault"),
        pytest.param(workfns.call_sys_exit, (3,), None, 3, id="sys.exit"),
    ],
)
async def test_crash_fails_only_its_task(fn: object, args: tuple[object, ...], signal_name: str, exitcode: int) -> None:
    async with procpool.Pool(2) as pool:
        innocent = pool.submit(workfns.sleep_and_return, 0.3, "innocent")
        await anyio.sleep(0.05)
        crashed_pid = None
        with pytest.raises(procpool.WorkerCrashedError) as info:
            await pool.run(fn, *args)  # type: ignore[operator]
        error = info.value
        crashed_pid = error.pid
        assert error.signal_name == signal_name
        assert error.exitcode == exitcode
        assert getattr(fn, "__name__", "?") in error.task
        assert await innocent == "innocent"
        # The pool replaced the worker and goes on.
        assert [await pool.run(workfns.square, i) for i in range(4)] == [0, 1, 4, 9]
        assert crashed_pid not in {await pool.run(workfns.getpid) for _ in range(4)}


async def test_unpicklable_argument_raises_at_call_site() -> None:
    async with procpool.Pool(1) as pool:
        import threading

        with pytest.raises(procpool.SerializationError, match="argument"):
            pool.submit(workfns.identity, threading.Lock())
        assert await pool.run(workfns.square, 3) == 9


def _open_on(stack: contextlib.ExitStack, path: Path, mode: str = "r") -> IO[Any]:
    return stack.enter_context(open(path, mode))


def _unpicklables(stack: contextlib.ExitStack, text: Path) -> list[object]:
    """What docs/errors.md names as unpicklable, opened on ``stack``."""
    return [
        threading.Lock(),
        _open_on(stack, text),  # text, for reading: cloudpickle alone would send a copy of its content
        _open_on(stack, text, "r+"),
        _open_on(stack, text, "rb"),
        _open_on(stack, text.with_suffix(".out"), "w"),
        stack.enter_context(socket.socket()),
        (i for i in ()),
        stack.enter_context(contextlib.closing(sqlite3.connect(":memory:"))),
    ]


async def test_what_cannot_be_pickled_and_where_it_is_raised(tmp_path: Path) -> None:
    """docs/errors.md, "Something cannot be pickled", claim by claim."""
    text = tmp_path / "data.txt"
    text.write_text("line 1\nline 2\n")
    async with procpool.Pool(1) as pool:
        with contextlib.ExitStack() as stack:
            for unpicklable in _unpicklables(stack, text):
                with pytest.raises(procpool.SerializationError, match="an argument of identity"):
                    pool.submit(workfns.identity, unpicklable)
                with pytest.raises(procpool.SerializationError, match="an argument of identity"):
                    pool.stream(workfns.identity, unpicklable)
                with pytest.raises(procpool.SerializationError, match="an argument of identity"):
                    pool.executor.submit(workfns.identity, unpicklable)
                with pytest.raises(procpool.SerializationError, match="an argument of identity"):
                    await pool.run(workfns.identity, unpicklable)
        assert pool.queued == 0
        # A map pickles each chunk as it sends it: the call returns, the await or async for raises.
        results = pool.map(workfns.identity, [1, threading.Lock(), 3])
        with pytest.raises(procpool.SerializationError, match="an argument of identity"):
            await results
        lock = threading.Lock()
        with pytest.raises(procpool.SerializationError, match="the function"):
            pool.map(lambda x: lock, [1])  # the function itself, at the call
        with contextlib.ExitStack() as stack:
            readable = _open_on(stack, text)
            with pytest.raises(procpool.SerializationError, match="pass its path, and open it in the task"):
                await pool.run(workfns.identity, readable)
        assert await pool.run(workfns.square, 3) == 9


async def test_unpicklable_result_fails_that_task() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(procpool.SerializationError, match="result"):
            await pool.run(workfns.return_lock)
        assert await pool.run(workfns.square, 3) == 9


async def test_unpicklable_exception_arrives_as_remote_error() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(procpool.RemoteError) as info:
            await pool.run(workfns.raise_unpicklable)
        assert info.value.type_name == "workfns.UnpicklableError"
        assert info.value.message == "carries a lock"
        assert "raise_unpicklable" in info.value.traceback_text
        assert await pool.run(workfns.square, 3) == 9


async def test_exception_that_cannot_be_rebuilt_arrives_as_remote_error() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(procpool.RemoteError, match="NeedsTwoArgsError: a-b"):
            await pool.run(workfns.raise_needs_two_args)
        assert await pool.run(workfns.square, 3) == 9


async def test_child_keyboard_interrupt_does_not_interrupt_the_parent() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(procpool.RemoteError, match="KeyboardInterrupt"):
            await pool.run(workfns.raise_keyboard_interrupt)
        assert await pool.run(workfns.square, 3) == 9


# -- cancellation ------------------------------------------------------------------------------


async def test_cancelled_queued_task_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    async with procpool.Pool(1) as pool:
        blocker = pool.submit(workfns.sleep_and_return, 0.3)
        with anyio.move_on_after(0.05):
            await pool.run(workfns.touch_after, str(marker), 0)
        await blocker
        assert await pool.run(workfns.square, 2) == 4  # the queue moved past the cancelled task
    assert not marker.exists()


async def test_cancelled_running_task_kills_its_worker(tmp_path: Path) -> None:
    marker = tmp_path / "running"
    async with procpool.Pool(1) as pool:
        with anyio.move_on_after(10) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.run, workfns.touch_after, str(marker), 30)
                while not marker.exists() or not marker.read_text():
                    await anyio.sleep(0.01)
                pid = int(marker.read_text())
                started = time.monotonic()
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        # The awaiting coroutine saw its cancellation only once the worker was gone.
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert time.monotonic() - started < 1
        assert await pool.run(workfns.square, 5) == 25
    assert "done" not in marker.read_text()


async def test_cancelled_running_task_finishes_without_kill_on_cancel(tmp_path: Path) -> None:
    marker = tmp_path / "running"
    async with procpool.Pool(1) as pool:
        quiet = pool.options(kill_on_cancel=False)
        with anyio.move_on_after(0.3) as scope:
            await quiet.run(workfns.touch_after, str(marker), 0.6)
        assert scope.cancelled_caught
        pid = int(marker.read_text())
        # It goes on, and the same worker takes the next task once it is done.
        assert await pool.run(workfns.getpid) == pid
        assert marker.read_text().endswith("done")


async def test_pool_option_kill_on_cancel_false(tmp_path: Path) -> None:
    marker = tmp_path / "running"
    async with procpool.Pool(1, kill_on_cancel=False) as pool:
        with anyio.fail_after(5), anyio.move_on_after(0.2):
            await pool.run(workfns.touch_after, str(marker), 0.5)
        await pool.run(workfns.square, 1)
        assert marker.read_text().endswith("done")


async def test_fail_after_raises_timeout() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(TimeoutError), anyio.fail_after(0.2):
            await pool.run(workfns.sleep_and_return, 10)
        assert await pool.run(workfns.square, 3) == 9


async def test_task_handle() -> None:
    async with procpool.Pool(1) as pool:
        first = pool.submit(workfns.sleep_and_return, 0.2, "first")
        queued = pool.submit(workfns.square, 3)
        assert not first.done()
        with pytest.raises(procpool.InvalidStateError):
            first.result()
        assert queued.cancel()
        assert queued.done()
        assert queued.cancelled()
        assert not queued.cancel()
        with pytest.raises(procpool.TaskCancelledError):
            await queued
        assert await first == "first"
        assert first.done()
        assert first.result() == "first"
        assert first.exception() is None
        failing = pool.submit(workfns.raise_value_error, "x")
        with pytest.raises(ValueError, match="x"):
            await failing
        assert isinstance(failing.exception(), ValueError)


async def test_task_cancel_kills_running_worker() -> None:
    async with procpool.Pool(1) as pool:
        pid = await pool.run(workfns.getpid)
        task = pool.submit(workfns.sleep_and_return, 30)
        await anyio.sleep(0.2)
        assert task.cancel()
        with anyio.fail_after(2), pytest.raises(procpool.TaskCancelledError):
            await task
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_a_task_awaited_by_several_coroutines_wakes_each_and_a_cancelled_wait_cancels_it() -> None:
    """Every coroutine awaiting one task gets its result; when one of them is cancelled, so is the
    task (as awaiting it promises), and the others see it cancelled, none left waiting."""
    async with procpool.Pool(1) as pool:
        task = pool.submit(workfns.sleep_and_return, 0.3, "done")
        results: list[object] = []

        async def await_it() -> None:
            results.append(await task)

        async def wait_it() -> None:
            results.append(await task.wait())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                for waiter in (await_it, wait_it, await_it):
                    task_group.start_soon(waiter)
        assert results == ["done"] * 3

        task = pool.submit(workfns.sleep_and_return, 30)
        outcomes: list[str] = []

        async def await_until_cancelled(scope: anyio.CancelScope) -> None:
            with scope:
                await task
            outcomes.append("cancelled wait")

        async def await_to_the_end() -> None:
            with pytest.raises(procpool.TaskCancelledError):
                await task
            outcomes.append("task cancelled")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                scope = anyio.CancelScope()
                task_group.start_soon(await_until_cancelled, scope)
                task_group.start_soon(await_to_the_end)
                await anyio.sleep(0.2)
                scope.cancel()
        assert task.cancelled()
        assert sorted(outcomes) == ["cancelled wait", "task cancelled"]


async def test_a_task_takes_attributes_of_the_callers_own() -> None:
    """As asyncio's futures and `concurrent.futures.Future` do: a task tagged with what it was
    for (``task.index = i``) comes back with it from `procpool.as_completed` or a done callback."""
    async with procpool.Pool(1) as pool:
        task = pool.submit(workfns.square, 3)
        task.index = 7  # type: ignore[attr-defined]
        assert await task == 9
        assert task.index == 7  # type: ignore[attr-defined]
        assert weakref.ref(task)() is task


async def test_a_running_task_cancelled_after_its_result_came_leaves_its_worker_in_service(tmp_path: Path) -> None:
    """The result is waiting, unread, when the cancel asks for the worker to be killed: there is
    nothing left to kill, and the worker goes on taking tasks."""
    done = tmp_path / "done"
    async with procpool.Pool(1) as pool:
        assert await pool.run(workfns.square, 2) == 4  # the worker is idle, known to the pool
        task = pool.submit(workfns.touch_after, str(done), 0)
        assert task.running()  # sent to the idle worker at once
        # Blocks the event loop on purpose until the worker has answered: the result waits unread.
        while not done.exists() or not done.read_text().endswith("done"):
            time.sleep(0.01)  # noqa: ASYNC251
        time.sleep(0.1)  # noqa: ASYNC251  (the result goes out just after the file is written)
        assert task.cancel()
        with pytest.raises(procpool.TaskCancelledError):
            await task
        with anyio.fail_after(5):
            assert await pool.run(workfns.square, 3) == 9


# -- map ---------------------------------------------------------------------------------------


async def test_map_ordered_and_unordered() -> None:
    async with procpool.Pool(2) as pool:
        assert [y async for y in pool.map(workfns.square, range(20))] == [x * x for x in range(20)]
        chunked = [y async for y in pool.map(workfns.add, range(10), range(10, 30), chunksize=3)]
        assert chunked == [a + b for a, b in zip(range(10), range(10, 30), strict=False)]
        delays = [0.3, 0.0, 0.0, 0.0]
        unordered = [y async for y in pool.map(workfns.sleep_and_return, delays, range(4), ordered=False)]
        assert sorted(unordered) == [0, 1, 2, 3]
        assert unordered[0] != 0  # the slow first item did not hold the others back


async def test_map_async_function_and_async_iterable() -> None:
    async def numbers() -> object:
        for i in range(6):
            await anyio.lowlevel.checkpoint()
            yield i

    async with procpool.Pool(2) as pool:
        results = [y async for y in pool.map(workfns.async_square, numbers(), chunksize=2)]  # type: ignore[arg-type]
        assert results == [i * i for i in range(6)]


async def test_map_error_ends_iteration_and_cancels_the_rest(tmp_path: Path) -> None:
    async with procpool.Pool(2) as pool:
        with pytest.raises(ValueError, match="bad"):
            async for _ in pool.map(workfns.raise_value_error, ["bad", "worse"]):
                pass
        assert await pool.run(workfns.square, 2) == 4


async def test_map_rejects_bad_arguments() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(TypeError, match="at least one iterable"):
            pool.map(workfns.square)
        with pytest.raises(TypeError, match="iterables"):
            pool.map(workfns.square, 3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="chunksize"):
            pool.map(workfns.square, [1], chunksize=0)
        with pytest.raises(ValueError, match="max_in_flight"):
            pool.map(workfns.square, [1], max_in_flight=-1)


# -- lifecycle and options ---------------------------------------------------------------------


async def test_exit_waits_for_submitted_tasks() -> None:
    async with procpool.Pool(2) as pool:
        tasks = [pool.submit(workfns.sleep_and_return, 0.1, i) for i in range(4)]
    assert [t.result() for t in tasks] == [0, 1, 2, 3]


async def test_exit_by_exception_cancels_tasks() -> None:
    with pytest.raises(LookupError):
        async with procpool.Pool(1) as pool:
            running = pool.submit(workfns.sleep_and_return, 30)
            queued = pool.submit(workfns.square, 2)
            await anyio.sleep(0.1)
            raise LookupError
    assert running.cancelled()
    assert queued.cancelled()


async def test_closed_pool_refuses_work() -> None:
    pool = procpool.Pool(1)
    with pytest.raises(procpool.PoolClosedError, match="not started"):
        pool.submit(workfns.square, 1)
    async with pool:
        await pool.aclose()
        await pool.aclose()
        with pytest.raises(procpool.PoolClosedError, match="closed"):
            await pool.run(workfns.square, 1)
    with pytest.raises(RuntimeError, match="only once"):
        async with pool:
            pass


async def test_max_tasks_per_worker_recycles_workers() -> None:
    async with procpool.Pool(1, max_tasks_per_worker=2) as pool:
        pids = [await pool.run(workfns.getpid) for _ in range(6)]
    assert len(set(pids)) == 3
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]


async def test_initializer_runs_in_each_worker() -> None:
    async with procpool.Pool(2, initializer=workfns.set_state, initargs=("greeting", "hello")) as pool:
        assert [await pool.run(workfns.get_state, "greeting") for _ in range(4)] == ["hello"] * 4


async def test_initializer_failure_is_raised_on_entry() -> None:
    with pytest.raises(procpool.InitializerError) as info:
        async with procpool.Pool(2, initializer=workfns.fail_initializer):
            pass
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "initializer refused" in str(info.value.__cause__)


async def test_spawn_start_method() -> None:
    async with procpool.Pool(1, start_method="spawn") as pool:
        assert await pool.run(lambda: 6 * 7) == 42


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2", True])
def test_bad_worker_count(workers: object) -> None:
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        procpool.Pool(workers)  # type: ignore[arg-type]


def test_bad_start_methods() -> None:
    with pytest.raises(ValueError, match="unknown start_method"):
        procpool.Pool(1, start_method="teleport")
    with pytest.raises(ValueError, match="forkserver"):
        procpool.Pool(1, start_method="fork")


def test_bad_options() -> None:
    with pytest.raises(TypeError, match="initializer"):
        procpool.Pool(1, initializer=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tasks_per_worker"):
        procpool.Pool(1, max_tasks_per_worker=0)
    with pytest.raises(ValueError, match="kill_grace"):
        procpool.Pool(1, kill_grace=-1)


def test_default_worker_count_is_usable_cpus() -> None:
    pool = procpool.Pool()
    assert pool.workers == procpool.available_cpus()
    assert 1 <= pool.workers <= len(os.sched_getaffinity(0))


async def test_non_callable_and_pool_pickling_are_refused() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(TypeError, match="must be a callable"):
            pool.submit(42)  # type: ignore[call-overload]
        with pytest.raises(procpool.SerializationError, match="cannot be pickled"):
            await pool.run(workfns.identity, pool)
        assert await pool.run(workfns.square, 2) == 2 * 2


async def test_queued_counts_tasks_waiting_for_a_worker() -> None:
    async with procpool.Pool(1) as pool:
        assert pool.queued == 0
        running = pool.submit(workfns.sleep_and_return, 0.3)
        waiting = [pool.submit(workfns.square, i) for i in range(3)]
        assert pool.queued == 4
        with anyio.fail_after(5):
            while pool.queued != 3:  # until the first one starts
                await anyio.sleep(0.01)
        waiting[0].cancel()
        assert pool.queued == 2
        await running
        assert [await t for t in waiting[1:]] == [1, 4]
        assert pool.queued == 0


async def test_map_and_starmap_can_be_awaited_for_a_list() -> None:
    async with procpool.Pool(2) as pool:
        assert await pool.map(workfns.square, range(5)) == [0, 1, 4, 9, 16]
        assert await pool.starmap(workfns.add, [(1, 2), (3, 4)]) == [3, 7]
        pairs = [(i, i) for i in range(7)]
        assert sorted(await pool.starmap(workfns.mul, pairs, ordered=False, chunksize=3)) == [i * i for i in range(7)]
        assert [y async for y in pool.starmap(workfns.add, iter([(1,), (2, 3)]))] == [1, 5]
        with pytest.raises(TypeError):
            await pool.starmap(workfns.add, [1, 2])  # items must be argument tuples


async def test_as_completed_yields_tasks_in_completion_order() -> None:
    async with procpool.Pool(2) as pool:
        slow = pool.submit(workfns.sleep_and_return, 0.5, "slow")
        fast = pool.submit(workfns.sleep_and_return, 0.0, "fast")
        failing = pool.submit(workfns.raise_value_error, "bad")
        order = [task async for task in procpool.as_completed([slow, fast, failing, fast])]
        assert order[-1] is slow
        assert set(order) == {slow, fast, failing}
        assert len(order) == 3
        assert isinstance(failing.exception(), ValueError)


# -- tasks sent ahead of the running one -------------------------------------------------------


async def _warm_up_tiny_tasks(pool: procpool.Pool) -> None:
    """Run enough tiny tasks that the pool sends several at a time to each worker."""
    await pool.map(workfns.square, range(200))


async def test_cancelled_task_sent_ahead_never_runs(tmp_path: Path) -> None:
    async with procpool.Pool(1) as pool:
        await _warm_up_tiny_tasks(pool)
        opener = pool.submit(workfns.square, 0)  # what follows is queued while the worker runs this...
        blocker = pool.submit(workfns.sleep_and_return, 0.5, "blocker")
        markers = [tmp_path / f"ran-{i}" for i in range(4)]
        followers = [pool.submit(workfns.touch_after, str(marker), 0) for marker in markers]
        await opener  # ...and taken as it ends: the blocker to run, the followers sent ahead
        await anyio.sleep(0.1)  # the blocker runs; the followers wait behind it, in the worker
        assert followers[0].timing.sent is not None  # sent ahead...
        assert not followers[0].running()  # ...but pending, as a concurrent.futures.Future would be
        assert followers[0].cancel()
        assert followers[0].cancelled()  # at once: it will never start
        with pytest.raises(procpool.TaskCancelledError):
            await followers[0]
        assert await blocker == "blocker"
        for follower in followers[1:]:
            await follower
    assert [marker.exists() for marker in markers] == [False, True, True, True]


async def test_crash_sends_waiting_tasks_to_another_worker() -> None:
    async with procpool.Pool(1) as pool:
        await _warm_up_tiny_tasks(pool)
        opener = pool.submit(workfns.square, 0)  # what follows is queued while the worker runs this...
        crashing = pool.submit(workfns.sleep_then_kill_self, 0.3)
        followers = [pool.submit(workfns.square, i) for i in range(20)]
        await opener  # ...and taken as it ends: the crashing task to run, the followers sent ahead
        await anyio.sleep(0.1)
        assert followers[0].timing.sent is not None  # sent to the worker, behind the task that will crash it
        with pytest.raises(procpool.WorkerCrashedError):
            await crashing
        assert [await task for task in followers] == [i * i for i in range(20)]


async def test_killing_a_cancelled_task_keeps_the_waiting_ones() -> None:
    async with procpool.Pool(1) as pool:
        await _warm_up_tiny_tasks(pool)
        pid = await pool.run(workfns.getpid)
        opener = pool.submit(workfns.square, 0)  # what follows is queued while the worker runs this...
        running = pool.submit(workfns.sleep_and_return, 30)
        followers = [pool.submit(workfns.square, i) for i in range(10)]
        await opener  # ...and taken as it ends: the long task to run, the followers sent ahead
        await anyio.sleep(0.2)
        assert running.running()
        assert followers[0].timing.sent is not None  # sent ahead, behind the task to be killed
        assert running.cancel()
        with pytest.raises(procpool.TaskCancelledError):
            await running
        assert [await task for task in followers] == [i * i for i in range(10)]
        assert await pool.run(workfns.getpid) != pid


async def test_queued_counts_tasks_sent_ahead() -> None:
    async with procpool.Pool(1) as pool:
        await _warm_up_tiny_tasks(pool)
        opener = pool.submit(workfns.square, 0)  # what follows is queued while the worker runs this...
        running = pool.submit(workfns.sleep_and_return, 0.5)
        waiting = [pool.submit(workfns.square, i) for i in range(3)]
        await opener  # ...and taken as it ends: the long task to run, the others sent ahead
        await anyio.sleep(0.2)
        assert waiting[0].timing.sent is not None  # sent ahead to the busy worker...
        assert not waiting[0].running()  # ...still pending...
        assert pool.queued == 3  # ...and counted as waiting to start
        await running
        assert [await task for task in waiting] == [0, 1, 4]
        assert pool.queued == 0
