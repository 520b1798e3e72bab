"""The contract every backend keeps, and the verbs and a call's life checked without processes.

First, the verbs (``run``, ``submit``, ``map``, ``starmap``, ``options``) and the life of a call
(`procpool.Task` over its backend's ``Job``) over `fake_backend.FakePool`, a backend the test moves
on by hand, step by step: what each verb hands the backend, and what each step does to the handle.

Then one behavioural contract over four pools: `procpool.Pool`, `procpool.testing.InlinePool`,
`procpool.DaskPool` (asyncio and uvloop only: Dask's client runs on asyncio) and an automatic
`FakePool`. Where a pool documents a difference (DaskPool cannot stop a running task nor set a
timeout, DaskPool does not stream), the test checks that difference or skips the point, saying why.
"""

from __future__ import annotations

import concurrent.futures
import functools
import gc
import logging
import pickle
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import psutil
import pytest

import procpool
import workfns
from fake_backend import FakeBackend, FakePool
from procpool._child import ChunkRunner
from procpool._core import Job, Stage
from procpool.testing import InlinePool

pytestmark = pytest.mark.anyio


def _states(handle: procpool.Task[Any] | concurrent.futures.Future[Any]) -> tuple[bool, bool, bool]:
    return handle.running(), handle.done(), handle.cancelled()


def _run_by_hand(backend: FakeBackend, job: Job) -> None:
    """Do what a worker does with ``job``: unpickle the call, run it here, send back its result."""
    fn = pickle.loads(job.fn_bytes)
    args, kwargs = pickle.loads(job.args_bytes)
    backend.start(job)
    backend.finish(job, fn(*args, **kwargs))


class _ExitsWhenUnpickled:
    """Pickles fine; unpickling it calls ``sys.exit(3)``."""

    def __reduce__(self) -> tuple[Callable[[int], NoReturn], tuple[int]]:
        return sys.exit, (3,)


def _raise_system_exit(_: object) -> NoReturn:
    raise SystemExit(4)


# -- the verbs, over a backend moved on by hand ------------------------------------------------------


async def test_submit_hands_the_backend_a_queued_job_with_the_pickled_call() -> None:
    async with FakePool() as pool:
        backend = pool.backend
        task = pool.submit(workfns.add, 1, b=2, scale=3)
        [job] = backend.jobs
        assert job.task is task
        assert job.id == task.id
        assert pickle.loads(job.fn_bytes) is workfns.add
        assert pickle.loads(job.args_bytes) == ((1,), {"b": 2, "scale": 3})
        assert job.description == f"add() [task {task.id}]"
        assert (job.stage, job.kill_on_cancel, job.retries) == (Stage.QUEUED, True, 0)
        assert backend.deadlines == []
        assert pool.queued == 1
        _run_by_hand(backend, job)
        assert await task == 9
        assert pool.queued == 0


async def test_run_submits_one_call_and_returns_what_the_backend_settles_it_with() -> None:
    results: list[object] = []
    async with FakePool() as pool, anyio.create_task_group() as task_group:

        async def call() -> None:
            results.append(await pool.run(workfns.square, 7))

        task_group.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        [job] = pool.backend.jobs
        assert pickle.loads(job.fn_bytes) is workfns.square
        assert pickle.loads(job.args_bytes) == ((7,), {})
        pool.backend.start(job)
        pool.backend.finish(job, "settled by the backend")
    assert results == ["settled by the backend"]


async def test_map_sends_chunks_to_a_chunk_runner_and_keeps_at_most_max_in_flight() -> None:
    results: list[int] = []
    async with FakePool() as pool, anyio.create_task_group() as task_group:
        backend = pool.backend

        async def consume() -> None:
            results.extend(await pool.map(workfns.add, range(5), range(10, 20), chunksize=2, max_in_flight=2))

        task_group.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        assert len(backend.jobs) == 2
        runner = pickle.loads(backend.jobs[0].fn_bytes)
        assert isinstance(runner, ChunkRunner)
        assert runner.fn is workfns.add
        assert pickle.loads(backend.jobs[0].args_bytes) == ((((0, 10), (1, 11)),), {})
        assert pickle.loads(backend.jobs[1].args_bytes) == ((((2, 12), (3, 13)),), {})
        # Ordered: the second chunk's result waits for the first, and no third chunk goes out.
        _run_by_hand(backend, backend.jobs[1])
        await anyio.wait_all_tasks_blocked()
        assert len(backend.jobs) == 2
        _run_by_hand(backend, backend.jobs[0])
        await anyio.wait_all_tasks_blocked()
        [last] = backend.jobs[2:]
        assert pickle.loads(last.args_bytes) == ((((4, 14),),), {})  # the shortest iterable ends the map
        _run_by_hand(backend, last)
    assert results == [10, 12, 14, 16, 18]


async def test_unordered_starmap_yields_chunks_as_they_complete() -> None:
    results: list[int] = []
    async with FakePool() as pool, anyio.create_task_group() as task_group:
        backend = pool.backend

        async def consume() -> None:
            async for result in pool.starmap(workfns.add, [(1, 2), (3, 4)], ordered=False):
                results.append(result)

        task_group.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        first, second = backend.jobs
        assert pickle.loads(second.args_bytes) == ((((3, 4),),), {})
        _run_by_hand(backend, second)
        await anyio.wait_all_tasks_blocked()
        assert results == [7]
        _run_by_hand(backend, first)
    assert results == [7, 3]


async def test_a_timeout_sets_a_deadline_from_the_call_whose_expiry_ends_the_task_with_timeout_error() -> None:
    async with FakePool() as pool:
        backend = pool.backend
        before = anyio.current_time()
        task = pool.options(timeout=5).submit(workfns.square, 2)
        after = anyio.current_time()
        [(job, deadline, timeout)] = backend.deadlines
        assert job.task is task
        assert timeout == 5.0
        assert before + 5 <= deadline <= after + 5
        # What a backend does at the deadline: a running job is stopped as a cancel would stop it.
        backend.start(job)
        job.expire(timeout)
        assert backend.taken_back == [job]
        assert not task.done()
        backend.kill(job)
        with pytest.raises(TimeoutError, match="within its 5 s timeout"):
            await task


async def test_retries_land_on_the_job_and_a_crashed_job_runs_again_while_its_task_stays_running() -> None:
    async with FakePool() as pool:
        backend = pool.backend
        task = pool.options(retries=1).submit(workfns.square, 3)
        [job] = backend.jobs
        assert job.retries == 1
        backend.start(job)
        backend.crash(job)
        assert (job.stage, job.retries, job.crashes) == (Stage.QUEUED, 0, 1)
        assert task.running()  # a handle never goes back to pending
        backend.start(job)
        backend.crash(job)
        with pytest.raises(procpool.WorkerCrashedError, match="SIGKILL"):
            await task
        with pytest.raises(ValueError, match="retries"):
            pool.options(retries=1).stream(workfns.count_up, 3)
        results: list[int] = []
        async with anyio.create_task_group() as task_group:

            async def consume() -> None:
                results.extend(await pool.options(retries=2).map(workfns.square, [5]))

            task_group.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            assert backend.jobs[-1].retries == 2
            _run_by_hand(backend, backend.jobs[-1])
        assert results == [25]


async def test_a_call_in_an_already_cancelled_scope_never_reaches_the_backend() -> None:
    async with FakePool() as pool:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pool.run(workfns.square, 2)
        assert scope.cancelled_caught
        assert pool.backend.jobs == []


# -- a call's life: Job and Task -----------------------------------------------------------------------


async def test_task_states_follow_a_concurrent_futures_future() -> None:
    """The same steps on a `concurrent.futures.Future` and on a task give the same states."""
    async with FakePool() as pool:
        backend = pool.backend
        task, future = pool.submit(workfns.square, 2), concurrent.futures.Future[int]()
        [job] = backend.jobs
        assert _states(task) == _states(future) == (False, False, False)
        job.take()  # sent ahead to a busy worker: still pending
        assert _states(task) == (False, False, False)
        job.began()
        assert future.set_running_or_notify_cancel()
        assert _states(task) == _states(future) == (True, False, False)
        for outcome in (task.result, task.exception):
            with pytest.raises(procpool.InvalidStateError, match="not done"):
                outcome()
        backend.finish(job, 4)
        future.set_result(4)
        assert _states(task) == _states(future) == (False, True, False)
        assert task.cancel() is future.cancel() is False
        assert task.result() == future.result() == 4
        assert task.exception() is future.exception() is None

        task, future = pool.submit(workfns.square, 2), concurrent.futures.Future[int]()
        with pytest.raises(procpool.InvalidStateError):
            task.result()
        assert task.cancel() is future.cancel() is True
        assert _states(task) == _states(future) == (False, True, True)
        assert not task.cancel()  # done: as asyncio's Future (concurrent.futures says True once cancelled)
        with pytest.raises(procpool.TaskCancelledError):
            task.result()
        with pytest.raises(procpool.TaskCancelledError):
            task.exception()
        with pytest.raises(procpool.TaskCancelledError):
            await task

        task = pool.submit(workfns.square, 2)
        error = ValueError("from the child")
        backend.fail(backend.jobs[-1], error)
        assert _states(task) == (False, True, False)
        assert task.exception() is error
        with pytest.raises(ValueError, match="from the child"):
            task.result()


async def test_cancelling_a_pending_task_settles_it_at_once_and_its_holder_takes_it_back() -> None:
    async with FakePool() as pool:
        backend = pool.backend
        queued, sent = pool.submit(workfns.square, 1), pool.submit(workfns.square, 2)
        queued_job, sent_job = backend.jobs
        sent_job.take()
        assert pool.queued == 1
        for task, job in ((queued, queued_job), (sent, sent_job)):
            assert task.cancel()
            assert task.cancelled()
            assert job.settled
            assert backend.taken_back[-1] is job
        assert pool.queued == 0
        assert not sent_job.take()  # a settled job is never sent


async def test_cancelling_a_running_task_that_kills_waits_for_the_backend_to_settle_it() -> None:
    caught = []
    async with FakePool() as pool, anyio.create_task_group() as task_group:
        backend = pool.backend
        scope = anyio.CancelScope()

        async def call() -> None:
            with scope:
                await pool.run(workfns.square, 3)
            caught.append(scope.cancelled_caught)

        task_group.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        [job] = backend.jobs
        task = job.task
        assert task is not None
        backend.start(job)
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert backend.taken_back == [job]  # the kill is asked for...
        assert task.running()  # ...and the task runs until the worker is gone,
        assert caught == []  # and so does its caller's cancellation
        backend.kill(job)
        await anyio.wait_all_tasks_blocked()
        assert task.cancelled()
        assert caught == [True]


async def test_cancelling_a_running_task_that_does_not_kill_settles_it_at_once_and_drops_its_result() -> None:
    async with FakePool(kill_on_cancel=False) as pool:
        backend = pool.backend
        task = pool.submit(workfns.square, 3)
        [job] = backend.jobs
        backend.start(job)
        assert task.cancel()
        assert task.cancelled()
        assert backend.taken_back == [job]
        backend.finish(job, 9)  # the result comes in after all: dropped
        assert task.cancelled()


async def test_a_done_callback_that_raises_system_exit_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakePool() as pool:
        task = pool.submit(workfns.square, 3)
        called: list[procpool.Task[int]] = []
        task.add_done_callback(called.append)
        task.add_done_callback(_raise_system_exit)
        task.add_done_callback(called.append)
        with caplog.at_level(logging.ERROR, logger="procpool"):
            _run_by_hand(pool.backend, pool.backend.jobs[0])
            task.add_done_callback(_raise_system_exit)  # on a done task: called at once, logged too
        assert called == [task, task]
        assert await task == 9
        assert [record.exc_info[0] for record in caplog.records if record.exc_info] == [SystemExit, SystemExit]
        assert all("done callback" in record.getMessage() for record in caplog.records)


async def test_a_result_whose_unpickling_raises_system_exit_fails_only_its_task() -> None:
    async with FakePool() as pool:
        backend = pool.backend
        bad, good = pool.submit(workfns.identity, 1), pool.submit(workfns.identity, 2)
        bad_job, good_job = backend.jobs
        backend.start(bad_job)
        backend.finish(bad_job, _ExitsWhenUnpickled())
        backend.start(good_job)
        backend.finish(good_job, 2)
        with pytest.raises(procpool.SerializationError, match="could not be unpickled") as info:
            await bad
        assert isinstance(info.value.__cause__, SystemExit)
        assert await good == 2


async def test_a_settled_job_lets_go_of_its_payload_and_handle_so_the_result_dies_with_the_task() -> None:
    async with FakePool() as pool:
        backend = pool.backend
        task = pool.options(timeout=60).submit(workfns.identity, workfns.Multiplier(2))
        [job] = backend.jobs
        _run_by_hand(backend, job)
        assert job.settled
        assert job.task is None
        assert job.fn_bytes == job.args_bytes == b""
        assert job.on_cancel is None
        result = weakref.ref(await task)
        assert isinstance(result(), workfns.Multiplier)
        del task
        gc.collect()
        # The backend still holds the job, in its list and in its deadlines: not the result.
        assert backend.jobs == [job]
        assert backend.deadlines[0][0] is job
        assert result() is None


# -- the facade's lifecycle, over a backend moved on by hand --------------------------------------------


async def test_a_normal_exit_refuses_new_work_and_waits_for_every_submitted_task() -> None:
    pool = FakePool()
    tasks: list[procpool.Task[int]] = []

    async def body() -> None:
        async with pool:
            tasks.append(pool.submit(workfns.square, 3))

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(body)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(procpool.PoolClosedError, match="closed"):
            pool.submit(workfns.square, 1)
        assert not tasks[0].done()
        _run_by_hand(pool.backend, pool.backend.jobs[0])
    assert tasks[0].result() == 9


async def test_leaving_by_an_exception_cancels_queued_and_running_tasks_and_lets_it_through() -> None:
    pool = FakePool()
    with pytest.raises(LookupError, match="the body's") as info:
        async with pool:
            queued = pool.submit(workfns.square, 1)
            running = pool.submit(workfns.square, 2)
            pool.backend.start(pool.backend.jobs[1])
            raise LookupError("the body's")
    assert type(info.value) is LookupError  # not wrapped in an ExceptionGroup
    assert queued.cancelled()
    assert running.cancelled()


async def test_a_cancellation_while_exit_waits_cancels_the_tasks() -> None:
    pool = FakePool()
    tasks: list[procpool.Task[int]] = []

    async def body() -> None:
        async with pool:
            tasks.append(pool.submit(workfns.square, 3))
            pool.backend.start(pool.backend.jobs[0])

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(body)
        await anyio.wait_all_tasks_blocked()
        assert not tasks[0].done()
        task_group.cancel_scope.cancel()
    assert tasks[0].cancelled()


# -- the contract over every pool ------------------------------------------------------------------------

AnyPool = procpool.Pool | InlinePool | procpool.DaskPool | FakePool
WORKERS = 2  # of a Pool; Dask's cluster (conftest) has 2 as well; InlinePool has 1
LOOPS = {"asyncio": ("asyncio", {}), "uvloop": ("asyncio", {"use_uvloop": True}), "trio": ("trio", {})}
contract = pytest.mark.parametrize(
    ("kind", "anyio_backend"),
    [
        pytest.param(kind, LOOPS[loop], id=f"{kind}-{loop}")
        for kind in ("local", "inline", "dask", "fake")
        for loop in LOOPS
        if not (kind == "dask" and loop == "trio")
    ],
)


@pytest.fixture
def make_pool(kind: str, dask_scheduler_address: str) -> Callable[[], AnyPool]:
    """A new, unopened pool of the kind under test.

    Every kind asks for the Dask cluster: started on the fly, after the leak check's snapshot,
    its pipes would count as leaks."""
    makers: dict[str, Callable[[], AnyPool]] = {
        "local": functools.partial(procpool.Pool, WORKERS),
        "inline": InlinePool,
        "dask": functools.partial(procpool.DaskPool, dask_scheduler_address),
        "fake": functools.partial(FakePool, automatic=True),
    }
    return makers[kind]


@pytest.fixture
def release_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for `workfns.wait_for_release`; a call still waiting returns at the end (an
    InlinePool's thread cannot be stopped)."""
    yield tmp_path
    (tmp_path / "release").touch()


async def _running_pid(task: procpool.Task[Any], release_dir: Path) -> int:
    """Wait until ``task``, a `workfns.wait_for_release` call, runs; the pid of its process."""
    pid_file = release_dir / "pid"
    with anyio.fail_after(10):
        while not task.running() or not pid_file.exists():
            await anyio.sleep(0.01)
    return int(pid_file.read_text())


@contract
async def test_run_returns_the_result_and_passes_keyword_arguments(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        assert await pool.run(workfns.square, 7) == 49
        assert await pool.run(workfns.add, 1, b=2, scale=10) == 30
        assert await pool.run(workfns.capture, "fn", self=1, fn=2) == (("fn",), {"self": 1, "fn": 2})


@contract
async def test_an_exception_keeps_its_type(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        with pytest.raises(ValueError, match="nope"):
            await pool.run(workfns.raise_value_error, "nope")
        task = pool.submit(divmod, 1, 0)
        with pytest.raises(ZeroDivisionError):
            await task
        assert type(task.exception()) is ZeroDivisionError
        assert await pool.run(workfns.square, 3) == 9


@contract
async def test_stop_iteration_comes_as_the_cause_of_a_runtime_error_where_it_cannot_come_itself(
    kind: str, make_pool: Callable[[], AnyPool]
) -> None:
    """An await cannot raise StopIteration (a coroutine turns it into RuntimeError, PEP 479), nor
    an ``async for`` StopAsyncIteration (it would end the loop as if no results were left): there
    each comes as the ``__cause__`` of a RuntimeError saying so. The task's own ``result()`` and
    ``exception()`` give the exception itself, as a concurrent.futures.Future does."""
    async with make_pool() as pool:
        with pytest.raises(RuntimeError, match="raised StopIteration, which an await cannot raise") as raised:
            await pool.run(workfns.raise_stop, StopIteration, 42)
        assert type(raised.value.__cause__) is StopIteration
        assert raised.value.__cause__.value == 42
        task = pool.submit(workfns.raise_stop, StopIteration, 7)
        with pytest.raises(RuntimeError, match="which an await cannot raise"):
            await task
        with pytest.raises(StopIteration) as stopped:
            task.result()
        assert stopped.value.value == 7
        with pytest.raises(StopAsyncIteration):  # an await may raise it
            await pool.run(workfns.raise_stop, StopAsyncIteration, 1)

        for stop in (StopIteration, StopAsyncIteration):
            match = f"raised {stop.__name__}, which (an await cannot raise|would end an async for)"
            with pytest.raises(RuntimeError, match=match) as raised:
                async for _ in pool.map(workfns.raise_stop, [stop], [1]):
                    pass
            assert type(raised.value.__cause__) is stop
            with pytest.raises(RuntimeError, match=match):
                await pool.map(workfns.raise_stop, [stop], [1])
        if kind in ("local", "inline"):
            items = []
            with pytest.raises(RuntimeError, match="would end an async for") as raised:
                async for item in pool.stream(workfns.yield_then_raise_stop, StopAsyncIteration, 5):
                    items.append(item)
            assert items == [5]
            assert type(raised.value.__cause__) is StopAsyncIteration
        assert await pool.run(workfns.square, 3) == 9


@contract
async def test_submit_returns_a_task_whose_state_is_consistent_once_awaited(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        task = pool.submit(workfns.square, 3)
        assert isinstance(task, procpool.Task)
        assert not task.done()
        with pytest.raises(procpool.InvalidStateError):
            task.result()
        assert await task == 9
        assert _states(task) == (False, True, False)
        assert task.result() == 9
        assert task.exception() is None
        assert not task.cancel()

        failing = pool.submit(workfns.raise_value_error, "x")
        with pytest.raises(ValueError, match="x"):
            await failing
        assert _states(failing) == (False, True, False)
        assert isinstance(failing.exception(), ValueError)
        with pytest.raises(ValueError, match="x"):
            failing.result()
        assert not failing.cancel()


@contract
async def test_map_and_starmap_return_the_results_ordered_or_as_completed(make_pool: Callable[[], AnyPool]) -> None:
    pairs = [(a, 10 * a) for a in range(7)]
    sums = [a + b for a, b in pairs]
    async with make_pool() as pool:
        for chunksize in (1, 3):
            assert await pool.map(workfns.square, range(7), chunksize=chunksize) == [x * x for x in range(7)]
            unordered = await pool.map(workfns.square, range(7), ordered=False, chunksize=chunksize)
            assert sorted(unordered) == [x * x for x in range(7)]
            assert await pool.map(workfns.add, range(3), range(10, 20), chunksize=chunksize) == [10, 12, 14]
            assert await pool.starmap(workfns.add, pairs, chunksize=chunksize) == sums
            assert sorted(await pool.starmap(workfns.add, pairs, ordered=False, chunksize=chunksize)) == sums
        assert [y async for y in pool.map(workfns.square, range(4))] == [0, 1, 4, 9]
        assert await pool.map(workfns.square, []) == []


@contract
async def test_a_queued_task_cancelled_before_it_starts_never_runs(
    make_pool: Callable[[], AnyPool], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    async with make_pool() as pool:
        task = pool.submit(workfns.touch_after, str(marker), 0)
        assert task.cancel()  # nothing has awaited since the submit: it cannot have started
        assert _states(task) == (False, True, True)
        with pytest.raises(procpool.TaskCancelledError):
            await task
        assert await pool.run(workfns.square, 2) == 4
    assert not marker.exists()


@contract
async def test_the_pool_refuses_work_before_async_with_and_after_it(make_pool: Callable[[], AnyPool]) -> None:
    pool = make_pool()
    for when in ("not started", "closed"):
        with pytest.raises(procpool.PoolClosedError, match=when):
            pool.submit(workfns.square, 1)
        with pytest.raises(procpool.PoolClosedError, match=when):
            await pool.run(workfns.square, 1)
        with pytest.raises(procpool.PoolClosedError, match=when):
            pool.map(workfns.square, [1])
        with pytest.raises(procpool.PoolClosedError, match=when):
            pool.starmap(workfns.add, [(1, 2)])
        if when == "not started":
            async with pool:
                assert await pool.run(workfns.square, 2) == 4


@contract
async def test_an_unpicklable_argument_raises_serialization_error_at_the_call(
    make_pool: Callable[[], AnyPool],
) -> None:
    async with make_pool() as pool:
        with pytest.raises(procpool.SerializationError, match="argument"):
            pool.submit(workfns.identity, threading.Lock())
        with pytest.raises(procpool.SerializationError, match="argument"):
            await pool.run(workfns.identity, threading.Lock())
        assert pool.queued == 0
        assert await pool.run(workfns.square, 3) == 9


@contract
async def test_leaving_async_with_by_an_exception_cancels_pending_tasks(
    kind: str, make_pool: Callable[[], AnyPool], release_dir: Path
) -> None:
    running: list[procpool.Task[Any]] = []
    with pytest.raises(LookupError):
        async with make_pool() as pool:
            # Only these say when a task runs (a Dask task stays pending; the fake runs a call to its
            # end on the loop, so none runs while the body does).
            if kind in ("local", "inline"):
                running.append(pool.submit(workfns.wait_for_release, str(release_dir), 10))
                await _running_pid(running[0], release_dir)
            queued = [pool.submit(workfns.square, i) for i in range(2 * WORKERS)]
            raise LookupError
    assert all(task.cancelled() for task in running + queued)


@contract
async def test_cancelling_a_running_task(kind: str, make_pool: Callable[[], AnyPool], release_dir: Path) -> None:
    if kind == "dask":
        pytest.skip("DaskPool cannot stop a running task, nor say when one starts (documented)")
    if kind == "fake":
        pytest.skip("the automatic fake runs each call to its end on the loop; see the tests by hand above")
    async with make_pool() as pool:
        task = pool.submit(workfns.wait_for_release, str(release_dir), 10)
        pid = await _running_pid(task, release_dir)
        assert task.cancel()
        with anyio.fail_after(10), pytest.raises(procpool.TaskCancelledError):
            await task
        assert _states(task) == (False, True, True)
        if kind == "local":  # its worker is gone
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        (release_dir / "release").touch()  # an InlinePool's call runs on in its thread (documented)
        assert await pool.run(workfns.square, 3) == 9


@contract
async def test_a_call_past_its_timeout_raises_timeout_error(
    kind: str, make_pool: Callable[[], AnyPool], release_dir: Path
) -> None:
    if kind == "fake":
        pytest.skip("the automatic fake runs each call to its end on the loop; see the deadline test above")
    async with make_pool() as pool:
        if isinstance(pool, procpool.DaskPool):
            with pytest.raises(ValueError, match="no timeout"):  # documented: use anyio.fail_after
                pool.options(kill_on_cancel=False, timeout=1)  # type: ignore[arg-type]
            return
        with pytest.raises(TimeoutError, match="timeout"):
            await pool.options(timeout=0.3).run(workfns.wait_for_release, str(release_dir), 10)
        (release_dir / "release").touch()  # an InlinePool's call runs on in its thread (documented)
        assert await pool.run(workfns.square, 3) == 9


@contract
async def test_a_local_or_inline_pool_streams(kind: str, make_pool: Callable[[], AnyPool]) -> None:
    """How the two streams compare in detail: test_stream_inline.py."""
    async with make_pool() as pool:
        if kind in ("local", "inline"):
            assert await pool.stream(workfns.count_up, 4) == [0, 1, 2, 3]
        else:  # documented for DaskPool; the fake refuses it as DaskPool does
            with pytest.raises(NotImplementedError, match="stream"):
                pool.stream(workfns.count_up, 4)
        assert pool.queued == 0
        assert await pool.run(workfns.square, 3) == 9


def _in_a_plain_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` to be run in a thread that is neither anyio's nor the loop's (an executor's), as a call."""

    def call() -> Any:
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            return thread.submit(fn).result()

    return call


@contract
async def test_use_from_another_thread_is_refused_with_advice_that_works(
    kind: str, make_pool: Callable[[], AnyPool]
) -> None:
    if kind == "fake":
        pytest.skip("the fake runs no threads and checks none")
    async with make_pool() as pool:
        token = anyio.lowlevel.current_token()
        for runner in (anyio.to_thread.run_sync, lambda fn: anyio.to_thread.run_sync(_in_a_plain_thread(fn))):
            with pytest.raises(RuntimeError, match="thread running its event loop") as refused:
                await runner(lambda: pool.submit(workfns.square, 2))
        advice = str(refused.value)
        # What the message names, and that each works from where it says.
        assert "in a thread started by anyio.to_thread.run_sync, anyio.from_thread.run(pool.run, fn, *args)" in advice
        assert await anyio.to_thread.run_sync(lambda: anyio.from_thread.run(pool.run, workfns.square, 3)) == 9
        if kind == "local":
            assert "pool.executor.submit(fn, *args).result()" in advice
            plain = _in_a_plain_thread(lambda: pool.executor.submit(workfns.square, 4).result())
        else:  # no executor view
            assert "anyio.from_thread.run(pool.run, fn, *args, token=token)" in advice
            assert "anyio.lowlevel.current_token()" in advice
            plain = _in_a_plain_thread(lambda: anyio.from_thread.run(pool.run, workfns.square, 4, token=token))
        assert await anyio.to_thread.run_sync(plain) == 16
