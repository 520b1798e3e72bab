"""The life of a task, as the public API shows it: states that mirror `concurrent.futures.Future`,
cancellation, executor futures, calls in cancelled scopes, unpicklable outcomes, references held
after a task ends, and a pool used from the wrong event loop.

A task is *pending* while it waits in the pool's queue or has been sent ahead to a worker busy with
another task; *running* once its worker runs it; then done. Tasks are sent ahead only once the pool
has learned that tasks are short (docs/design.md, "Tasks sent ahead"): `_learn_tasks_are_short`
sets that up, and ``task.timing.sent`` tells whether a pending task has been sent.
"""

from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import uvloop

import lifecycle_fns
import procpool
import workfns
from forking import in_forked_process
from script_env import TESTS, script_env

pytestmark = pytest.mark.anyio

asyncio_only = pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")],
)
LOOP_FACTORIES = [pytest.param(asyncio.new_event_loop, id="asyncio"), pytest.param(uvloop.new_event_loop, id="uvloop")]

SCRIPTS = TESTS / "scripts"
HOLD = 30.0  # seconds at most that a held task keeps the only worker busy, until `_release`


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = anyio.current_time() + timeout
    while not condition():
        assert anyio.current_time() < deadline, f"timed out waiting until {what}"
        await anyio.sleep(0.005)


def _until_in_thread(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


async def _learn_tasks_are_short(pool: procpool.Pool) -> None:
    """Run tiny tasks one after another, so the pool sends tasks ahead to a busy worker."""
    for i in range(20):
        await pool.run(workfns.square, i)


def _hold(directory: Path) -> tuple[Any, ...]:
    """A call that keeps its worker busy until `_release` (``directory`` is the test's own)."""
    return workfns.wait_for_release, str(directory), HOLD


async def _release(directory: Path) -> int:
    """Let the held call end; what it returns (its worker's pid)."""
    pid = directory / "pid"
    await _until(pid.exists, "the held call has begun")
    (directory / "release").touch()
    return int(pid.read_text())


async def _long_then_sent_ahead(
    pool: procpool.Pool, long_call: tuple[Any, ...], fn: Callable[..., Any], *args: Any
) -> tuple[procpool.Task[Any], procpool.Task[Any]]:
    """A long task (``long_call``) on the only worker and, submitted right behind it, ``fn(*args)``
    sent ahead to that worker (the pool knows tasks are short)."""
    opener = pool.submit(workfns.square, 0)
    long = pool.submit(*long_call)  # queued, with the next, while the worker runs the opener...
    ahead = pool.submit(fn, *args)
    await opener  # ...and taken as it ends: the long one to run, the other sent ahead behind it
    await _until(long.running, "the long task runs")
    await _until(lambda: ahead.timing.sent is not None, "the task behind it is sent ahead (the case under test)")
    return long, ahead


async def _assert_cancelled_at_once(task: procpool.Task[Any]) -> None:
    assert task.cancelled()
    assert task.done()
    assert not task.running()
    with pytest.raises(procpool.TaskCancelledError):
        task.result()
    with pytest.raises(procpool.TaskCancelledError):
        task.exception()
    with anyio.fail_after(1), pytest.raises(procpool.TaskCancelledError):  # settled already: at once
        await task


def _assert_pending(task: procpool.Task[Any]) -> None:
    assert not task.done()
    assert not task.running()
    assert not task.cancelled()
    with pytest.raises(procpool.InvalidStateError):
        task.result()


# -- A. task states ------------------------------------------------------------------------------


async def test_task_waiting_in_the_queue_is_pending_and_counted_as_queued(tmp_path: Path) -> None:
    async with procpool.Pool(1) as pool:
        long = pool.submit(*_hold(tmp_path))
        queued = pool.submit(workfns.square, 3)
        await _until(long.running, "the long task runs")
        assert queued.timing.sent is None  # still in the pool's queue (a new pool sends nothing ahead)
        _assert_pending(queued)
        assert pool.queued == 1
        worker = await _release(tmp_path)
        assert await long == worker
        assert await queued == 9


async def test_task_sent_ahead_to_a_busy_worker_is_pending_and_counted_as_queued(tmp_path: Path) -> None:
    async with procpool.Pool(1) as pool:
        await _learn_tasks_are_short(pool)
        long, ahead = await _long_then_sent_ahead(pool, _hold(tmp_path), workfns.square, 3)
        _assert_pending(ahead)
        assert pool.queued == 1
        worker = await _release(tmp_path)
        assert await long == worker
        assert await ahead == 9


async def test_task_running_in_its_worker_is_running_and_not_queued(tmp_path: Path) -> None:
    marker = tmp_path / "began"
    async with procpool.Pool(1) as pool:
        task = pool.submit(workfns.touch_after, str(marker), 1.0)
        await _until(marker.exists, "the worker runs the task")
        await _until(task.running, "the task is seen running")
        assert not task.done()
        assert not task.cancelled()
        assert pool.queued == 0
        assert await task == int(marker.read_text().split()[0])


async def test_task_sent_ahead_becomes_running_only_when_its_worker_begins_it() -> None:
    async with procpool.Pool(1) as pool:
        await _learn_tasks_are_short(pool)
        first, second = await _long_then_sent_ahead(
            pool, (workfns.sleep_and_return, 1.0, "first"), workfns.sleep_and_return, 1.0, "second"
        )
        assert not second.running()
        await _until(second.running, "the second task runs")
        assert first.done()  # it began after the task ahead of it ended
        assert not second.done()
        assert pool.queued == 0
        assert await second == "second"


async def test_finished_task_is_done_with_its_result_and_cannot_be_cancelled() -> None:
    async with procpool.Pool(1) as pool:
        task = pool.submit(workfns.square, 7)
        assert await task == 49
        assert task.done()
        assert not task.running()
        assert not task.cancelled()
        assert task.result() == 49
        assert task.exception() is None
        assert not task.cancel()
        assert not task.cancelled()
        assert task.result() == 49


async def test_cancelling_a_queued_task_ends_it_at_once_and_it_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    async with procpool.Pool(1) as pool:
        long = pool.submit(*_hold(tmp_path))
        queued = pool.submit(lifecycle_fns.touch, str(marker))
        await _until(long.running, "the long task runs")
        assert queued.cancel()
        await _assert_cancelled_at_once(queued)
        assert pool.queued == 0
        assert not long.done()  # the wait above did not wait for it
        worker = await _release(tmp_path)
        assert await long == worker
    assert not marker.exists()


async def test_cancelling_a_task_sent_ahead_ends_it_at_once_and_it_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    async with procpool.Pool(1) as pool:
        await _learn_tasks_are_short(pool)
        long, ahead = await _long_then_sent_ahead(pool, _hold(tmp_path), lifecycle_fns.touch, str(marker))
        assert ahead.cancel()
        await _assert_cancelled_at_once(ahead)
        assert not long.done()  # the wait above did not wait for it
        worker = await _release(tmp_path)
        assert await long == worker  # the cancel did not kill the worker running it
        assert await pool.run(workfns.square, 5) == 25
    assert not marker.exists()


async def test_cancelled_task_sent_ahead_no_longer_counts_as_queued(tmp_path: Path) -> None:
    async with procpool.Pool(1) as pool:
        await _learn_tasks_are_short(pool)
        long, ahead = await _long_then_sent_ahead(pool, _hold(tmp_path), lifecycle_fns.touch, str(tmp_path / "ran"))
        assert pool.queued == 1
        assert ahead.cancel()
        assert pool.queued == 0  # done: it will never start
        worker = await _release(tmp_path)
        assert await long == worker


async def test_task_started_event_for_a_task_sent_ahead_comes_when_it_begins() -> None:
    events: list[Any] = []

    def started(task: procpool.Task[Any]) -> list[int]:
        return [i for i, e in enumerate(events) if isinstance(e, procpool.TaskStarted) and e.task is task]

    def ended(task: procpool.Task[Any]) -> list[int]:
        return [i for i, e in enumerate(events) if isinstance(e, procpool.TaskEnded) and e.task is task]

    async with procpool.Pool(1, on_event=events.append) as pool:
        await _learn_tasks_are_short(pool)
        long, ahead = await _long_then_sent_ahead(pool, (workfns.sleep_and_return, 1.0, "long"), workfns.square, 3)
        assert len(started(long)) == 1
        assert started(ahead) == []  # sent, not begun
        assert await long == "long"
        assert await ahead == 9
    assert len(started(ahead)) == 1
    assert ended(long)[0] < started(ahead)[0] < ended(ahead)[0]


# -- B. executor futures -------------------------------------------------------------------------


async def test_executor_queued_future_can_be_cancelled_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    async with procpool.Pool(1) as pool:
        executor = pool.executor

        def from_thread() -> None:
            long = executor.submit(workfns.sleep_and_return, 1.0, "long")
            _until_in_thread(long.running, "the long task runs")
            queued = executor.submit(lifecycle_fns.touch, str(marker))
            assert not queued.running()
            assert not queued.done()
            assert queued.cancel()
            assert queued.cancelled()
            assert queued.done()
            with pytest.raises(futures.CancelledError):
                queued.result(timeout=0)
            assert long.result(timeout=30) == "long"

        await anyio.to_thread.run_sync(from_thread)
        assert await pool.run(workfns.square, 5) == 25
    assert not marker.exists()


async def test_executor_future_sent_ahead_is_pending_and_can_be_cancelled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    events: list[Any] = []
    async with procpool.Pool(1, on_event=events.append) as pool:
        await _learn_tasks_are_short(pool)
        executor = pool.executor
        del events[:]

        def new_events(kind: type[Any]) -> list[Any]:
            return [e for e in events if isinstance(e, kind)]

        # From the loop's own thread both reach the pool in one go, queued while the worker runs the
        # opener, which it takes as the opener ends: the second sent ahead behind the first.
        opener = pool.submit(workfns.square, 0)
        long = executor.submit(*_hold(tmp_path))
        ahead = executor.submit(lifecycle_fns.touch, str(marker))
        await opener
        del events[:]  # the opener's; the long task's start is seen by its running() below
        await _until(long.running, "the long task starts")
        assert not ahead.running()
        assert not ahead.done()
        assert ahead.cancel()
        assert ahead.cancelled()
        # The only task that can end while the long one runs is the cancelled one.
        await _until(lambda: bool(new_events(procpool.TaskEnded)), "the cancelled task ends")
        (ended,) = new_events(procpool.TaskEnded)
        task = ended.task
        assert task.cancelled()
        assert task.timing.sent is not None  # it had been sent ahead: the case under test
        worker = await _release(tmp_path)
        assert await anyio.to_thread.run_sync(long.result, 30) == worker
    assert not marker.exists()


async def test_executor_running_future_cannot_be_cancelled(tmp_path: Path) -> None:
    marker = tmp_path / "began"
    async with procpool.Pool(1) as pool:
        executor = pool.executor

        def from_thread() -> int:
            future = executor.submit(workfns.touch_after, str(marker), 0.5)
            _until_in_thread(marker.exists, "the worker runs the call")
            _until_in_thread(future.running, "the future is seen running")
            assert not future.cancel()
            assert not future.cancelled()
            return future.result(timeout=30)

        assert await anyio.to_thread.run_sync(from_thread) == int(marker.read_text().split()[0])
    assert marker.read_text().endswith("done")  # it ran to its end


def _crash_with_futures_sent_ahead(executor: procpool.PoolExecutor, go: Path) -> list[Any]:
    """From a plain thread, on a 1-worker pool that knows tasks are short: a call that crashes its
    worker, with futures sent ahead to that worker; the followers' results."""
    crashing = executor.submit(lifecycle_fns.exit_after_progress, str(go))
    followers = [executor.submit(workfns.square, i) for i in range(8)]
    # The crashing call reports progress now: the busy worker is sent followers ahead of it.
    go.touch()
    with pytest.raises(procpool.WorkerCrashedError):
        crashing.result(timeout=30)
    return [future.result(timeout=30) for future in followers]


@pytest.mark.timeout(120)
async def test_executor_crash_fails_only_the_crashed_future_submitted_from_a_thread(tmp_path: Path) -> None:
    async with procpool.Pool(1) as pool:
        await _learn_tasks_are_short(pool)
        followers = await anyio.to_thread.run_sync(_crash_with_futures_sent_ahead, pool.executor, tmp_path / "go")
        assert followers == [i * i for i in range(8)]
        assert await pool.run(workfns.square, 12) == 144


@pytest.mark.timeout(120)
async def test_executor_crash_fails_only_the_crashed_future_submitted_from_a_threading_thread(tmp_path: Path) -> None:
    async with procpool.Pool(1) as pool:
        await _learn_tasks_are_short(pool)
        outcome: list[Any] = []

        def in_thread() -> None:
            try:
                outcome.append(_crash_with_futures_sent_ahead(pool.executor, tmp_path / "go"))
            except BaseException as exc:  # reported below, in the test's own thread
                outcome.append(exc)

        thread = threading.Thread(target=in_thread)
        thread.start()
        await _until(lambda: not thread.is_alive(), "the thread is done", timeout=90)
        thread.join()
        assert outcome == [[i * i for i in range(8)]]
        assert await pool.run(workfns.square, 12) == 144


@asyncio_only
@pytest.mark.timeout(120)
async def test_executor_crash_fails_only_the_crashed_future_with_run_in_executor() -> None:
    async with procpool.Pool(1) as pool:
        await _learn_tasks_are_short(pool)
        loop = asyncio.get_running_loop()
        # One go, from the loop's thread: the followers are sent ahead to the worker that will crash.
        crashing = loop.run_in_executor(pool.executor, workfns.sleep_then_kill_self, 0.3)
        followers = [loop.run_in_executor(pool.executor, workfns.square, i) for i in range(8)]
        with anyio.fail_after(30):
            outcomes = await asyncio.gather(crashing, *followers, return_exceptions=True)
        assert isinstance(outcomes[0], procpool.WorkerCrashedError), outcomes[0]
        assert outcomes[1:] == [i * i for i in range(8)]
        assert await pool.run(workfns.square, 12) == 144


# -- C. a call in an already-cancelled scope ------------------------------------------------------


@pytest.mark.parametrize("kill_on_cancel", [True, False])
@pytest.mark.parametrize("how", ["cancel", "expired_deadline"])
async def test_call_in_an_already_cancelled_scope_never_begins_and_kills_no_worker(
    tmp_path: Path, kill_on_cancel: bool, how: str
) -> None:
    events: list[Any] = []
    async with procpool.Pool(2, on_event=events.append) as pool:
        view = pool.options(kill_on_cancel=kill_on_cancel)

        def started() -> set[int]:
            return {e.pid for e in events if isinstance(e, procpool.WorkerStarted)}

        await _until(lambda: len(started()) == 2, "both workers are reported started")
        pids = started()
        before = pool.stats()
        for i in range(100):
            reached = False
            with anyio.CancelScope() if how == "cancel" else anyio.move_on_after(0) as scope:
                if how == "cancel":
                    scope.cancel()
                await view.run(lifecycle_fns.touch, str(tmp_path / f"ran-{i}"))
                reached = True
            assert scope.cancelled_caught
            assert not reached
        after = pool.stats()
        assert [e for e in events if isinstance(e, procpool.WorkerExited)] == []
        assert started() == pids
        assert (after.crashed, after.recycled, after.alive) == (before.crashed, before.recycled, 2)
        assert await pool.run(workfns.square, 3) == 9
    assert list(tmp_path.iterdir()) == []


async def test_call_in_a_shielded_scope_inside_a_cancelled_one_runs() -> None:
    async with procpool.Pool(1) as pool:
        with anyio.CancelScope() as outer:
            outer.cancel()
            with anyio.CancelScope(shield=True):
                assert await pool.run(workfns.square, 4) == 16  # the shield hides the outer cancel
            with anyio.CancelScope():  # not shielded: the outer cancel reaches through it
                await pool.run(workfns.square, 5)
                pytest.fail("a call in a scope inside a cancelled one returned")
        assert outer.cancelled_caught


# -- D. BaseException while unpickling an outcome ----------------------------------------------------


def _run_unpickling_script(backend: str, kind: str, outcome: str) -> None:
    """scripts/unpickling_outcome.py, in a process of its own: should the SystemExit or
    KeyboardInterrupt escape into its event loop, the script ends or hangs, not this session."""
    command = [sys.executable, str(SCRIPTS / "unpickling_outcome.py"), backend, kind, outcome]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env()
    ) as script:
        try:
            out, err = script.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            script.kill()
            out, err = script.communicate()
            pytest.fail(f"the script hung; its stderr:\n{err}")
    assert (script.returncode, out) == (0, "ok\n"), err


backends = pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
base_exceptions = pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])


@pytest.mark.timeout(60)
@backends
@base_exceptions
def test_result_whose_unpickling_raises_base_exception_fails_only_its_task(backend: str, kind: str) -> None:
    _run_unpickling_script(backend, kind, "result")


@pytest.mark.timeout(60)
@backends
@base_exceptions
def test_exception_whose_unpickling_raises_base_exception_fails_only_its_task(backend: str, kind: str) -> None:
    _run_unpickling_script(backend, kind, "exception")


@pytest.mark.timeout(60)
@base_exceptions
async def test_executor_done_callback_raising_base_exception_does_not_stop_the_pool(tmp_path: Path, kind: str) -> None:
    go = tmp_path / "go"
    called: list[Any] = []

    def callback(future: futures.Future[Any]) -> None:
        called.append(future)
        lifecycle_fns.explode(kind)

    async with procpool.Pool(2) as pool:
        executor = pool.executor

        def from_thread() -> list[Any]:
            gated = executor.submit(lifecycle_fns.wait_for_file, str(go), "gated")
            gated.add_done_callback(callback)  # before it is done: the pool's thread calls it
            others = [executor.submit(workfns.square, i) for i in range(10)]
            go.touch()
            assert gated.result(timeout=30) == "gated"
            results = [future.result(timeout=30) for future in others]
            results += [executor.submit(workfns.square, i).result(timeout=30) for i in range(10, 12)]
            return results

        assert await anyio.to_thread.run_sync(from_thread) == [i * i for i in range(12)]
        assert len(called) == 1
        with anyio.fail_after(30):
            assert await pool.run(workfns.square, 12) == 144
            assert await pool.map(workfns.square, range(5)) == [0, 1, 4, 9, 16]


# -- E. references released when a task ends -------------------------------------------------------


@pytest.mark.parametrize("timeout", [3600, None])
async def test_result_and_task_are_released_when_the_task_ends(timeout: float | None) -> None:
    async with procpool.Pool(1) as pool:
        task = pool.options(timeout=timeout).submit(lifecycle_fns.make_payload, 1_000_000)
        result = await task
        result_ref, task_ref = weakref.ref(result), weakref.ref(task)
        del result, task
        gc.collect()
        assert result_ref() is None  # nothing in the pool keeps it (a deadline, a worker slot...)
        assert task_ref() is None


async def test_result_of_run_is_released_when_the_call_ends_on_an_idle_pool() -> None:
    async with procpool.Pool(1) as pool:
        result = await pool.run(lifecycle_fns.make_payload, 1_000_000)
        result_ref = weakref.ref(result)
        del result
        gc.collect()
        assert result_ref() is None


@pytest.mark.parametrize("timeout", [3600, None])
async def test_exception_is_released_when_the_task_ends(timeout: float | None) -> None:
    async with procpool.Pool(1) as pool:
        task = pool.options(timeout=timeout).submit(lifecycle_fns.raise_payload_error, 1_000_000)
        with pytest.raises(lifecycle_fns.PayloadError) as caught:
            await task
        error_ref = weakref.ref(caught.value)
        del caught, task
        gc.collect()
        assert error_ref() is None


# -- F. a pool and the event loop it belongs to (asyncio's loops) ---------------------------------------


class _HeldOpen:
    """A pool entered and left by one task of ``runner``'s loop, while the loop is not running."""

    def __init__(
        self, runner: asyncio.Runner, loop_factory: Callable[[], asyncio.AbstractEventLoop], pool: procpool.Pool
    ) -> None:
        self.runner = runner
        self.loop_factory = loop_factory
        self.pool = pool
        self._holder: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None

    def open(self) -> None:
        async def start() -> None:
            opened, self._closing = asyncio.Event(), asyncio.Event()

            async def hold() -> None:
                assert self._closing is not None
                async with self.pool:
                    opened.set()
                    await self._closing.wait()

            self._holder = asyncio.get_running_loop().create_task(hold())
            await opened.wait()

        self.runner.run(start())

    def close(self) -> None:
        async def stop() -> None:
            assert self._closing is not None
            assert self._holder is not None
            self._closing.set()
            await asyncio.wait_for(self._holder, 30)

        self.runner.run(stop())


@pytest.fixture
def held_open(request: pytest.FixtureRequest) -> Iterator[_HeldOpen]:
    with asyncio.Runner(loop_factory=request.param) as home:
        held = _HeldOpen(home, request.param, procpool.Pool(1))
        held.open()
        try:
            yield held
        finally:
            held.close()


async def _submit_and_await(pool: procpool.Pool) -> Any:
    return await pool.submit(workfns.square, 3)


async def _map(pool: procpool.Pool) -> Any:
    return await pool.map(workfns.square, range(3))


async def _executor_submit(pool: procpool.Pool) -> Any:
    return await asyncio.wrap_future(pool.executor.submit(workfns.square, 3))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("held_open", LOOP_FACTORIES, indirect=True)
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda pool: pool.run(workfns.square, 3), id="run"),
        pytest.param(_submit_and_await, id="submit"),
        pytest.param(_map, id="map"),
        pytest.param(_executor_submit, id="executor"),
    ],
)
def test_pool_used_from_another_event_loop_raises_at_once(
    held_open: _HeldOpen, call: Callable[[procpool.Pool], Any]
) -> None:
    pool, home = held_open.pool, held_open.runner
    assert home.run(pool.run(workfns.square, 2)) == 4
    with asyncio.Runner(loop_factory=held_open.loop_factory) as other, pytest.raises(RuntimeError, match="event loop"):
        other.run(asyncio.wait_for(call(pool), 10))
    assert home.run(pool.run(workfns.square, 4)) == 16  # still fine in its own loop


@pytest.mark.timeout(60)
@pytest.mark.parametrize("held_open", LOOP_FACTORIES, indirect=True)
def test_pool_used_in_a_process_forked_from_its_running_loop_raises_at_once(held_open: _HeldOpen) -> None:
    """In a process forked while the pool's loop runs (a pre-forking server's worker, say), that
    loop's copy still says it is running, in the same thread: the pool must refuse all the same."""
    pool, home = held_open.pool, held_open.runner

    def in_child() -> object:
        try:
            return asyncio.run(asyncio.wait_for(pool.run(workfns.square, 2), 10))  # a new loop
        except RuntimeError as exc:
            return str(exc)

    async def fork_from_the_loop() -> object:
        return in_forked_process(in_child)

    refused = home.run(fork_from_the_loop())
    assert isinstance(refused, str)
    assert "event loop" in refused
    assert home.run(pool.run(workfns.square, 4)) == 16  # still fine in its own loop


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop_factory", LOOP_FACTORIES)
def test_pool_whose_event_loop_was_closed_is_not_open_and_refuses_calls(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    pool = procpool.Pool(1)
    with asyncio.Runner(loop_factory=loop_factory) as home:
        home.run(pool.__aenter__())
        assert home.run(pool.run(workfns.square, 2)) == 4
        assert re.search(r"\bopen\b", repr(pool))
    # The loop is closed, and the pool was never left: it cannot be open any longer.
    assert not re.search(r"\bopen\b", repr(pool)), repr(pool)
    with asyncio.Runner(loop_factory=loop_factory) as other:
        with pytest.raises(RuntimeError, match=r"closed|event loop"):
            other.run(asyncio.wait_for(pool.run(workfns.square, 2), 10))
        with pytest.raises(RuntimeError, match=r"closed|event loop"):
            other.run(asyncio.wait_for(_submit_and_await(pool), 10))


@pytest.mark.timeout(60)
def test_a_pool_made_outside_any_event_loop_loads_no_event_loop_library() -> None:
    """The check that a pool is used from its own loop is set up when the pool opens, in its
    loop: made before that (at a module's top level, say), a pool must not import trio, which
    procpool does not depend on."""
    script = "import sys, procpool; procpool.Pool(1); print(sorted({'trio'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], env=script_env(), capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
