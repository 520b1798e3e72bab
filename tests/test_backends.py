"""The behaviour both backends share: each test runs against `procpool.Pool` and `procpool.DaskPool`.

The Dask pool connects to the LocalCluster of the ``dask_scheduler_address`` fixture (2 worker
processes of one thread each), matching the local pool's 2 workers. Dask's client runs on asyncio
only, so the Dask runs are under asyncio and uvloop (test_dask.py checks the error under trio).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import procpool
import workfns

pytestmark = pytest.mark.anyio

AnyPool = procpool.Pool | procpool.DaskPool
WORKERS = 2
LOOPS = {"asyncio": ("asyncio", {}), "uvloop": ("asyncio", {"use_uvloop": True}), "trio": ("trio", {})}
COMBOS = [
    pytest.param((kind, loop), id=f"{kind}-{loop}")
    for kind in ("local", "dask")
    for loop in LOOPS
    if not (kind == "dask" and loop == "trio")
]


@pytest.fixture(params=COMBOS)
def combo(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(combo: tuple[str, str]) -> Any:
    """Overrides conftest's: this module's matrix is pool kind x event loop."""
    return LOOPS[combo[1]]


@pytest.fixture
def make_pool(combo: tuple[str, str], dask_scheduler_address: str) -> Callable[[], AnyPool]:
    """A new, unopened pool of the kind under test.

    It asks for the Dask cluster even for the local pool: a fixture asked for on the fly would
    start the cluster after the leak check's snapshot, which would then see its pipes as leaks.
    """
    if combo[0] == "local":
        return functools.partial(procpool.Pool, WORKERS)
    return functools.partial(procpool.DaskPool, dask_scheduler_address)


def _finish_rendezvous(directory: Path, name: str) -> None:
    """Let a `workfns.rendezvous` that waits for ``name`` return (a Dask worker cannot be stopped)."""
    (directory / name).touch()


@pytest.fixture
def rendezvous_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for `workfns.rendezvous`; every wait still pending is released at the end."""
    yield tmp_path
    for name in ("release", "b", "a"):
        _finish_rendezvous(tmp_path, name)


# -- calls and results ---------------------------------------------------------------------------


async def test_run_submit_and_keyword_arguments(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        assert await pool.run(workfns.square, 7) == 49
        assert await pool.run(workfns.add, 1, b=2, scale=10) == 30
        task = pool.submit(workfns.add, 2, 3)
        assert isinstance(task, procpool.Task)
        assert await task == 5
        # Names that Dask's own submit() takes as options reach the function untouched.
        dask_keywords = {"key": 1, "pure": 2, "workers": 3, "priority": 4, "retries": 5, "resources": 6, "actor": 7}
        assert await pool.run(workfns.capture, "fn", **dask_keywords) == (("fn",), dask_keywords)


async def test_lambda_closure_partial_bound_method_and_async_function(make_pool: Callable[[], AnyPool]) -> None:
    offset = 5

    def closure(x: int) -> int:
        return x + offset

    async with make_pool() as pool:
        assert await pool.run(lambda x: x * 3, 4) == 12
        assert await pool.run(closure, 1) == 6
        assert await pool.run(functools.partial(workfns.add, 2, scale=3), 1) == 9
        assert await pool.run(workfns.Multiplier(4).times, 5) == 20
        assert await pool.run(workfns.async_square, 6) == 36


async def test_identical_calls_each_run(make_pool: Callable[[], AnyPool]) -> None:
    """Two identical calls are two calls: Dask would merge them into one unless told not to."""
    async with make_pool() as pool:
        first, second = pool.submit(os.urandom, 16), pool.submit(os.urandom, 16)
        assert await first != await second


async def test_tasks_run_in_other_processes_at_the_same_time(
    make_pool: Callable[[], AnyPool], rendezvous_dir: Path
) -> None:
    async with make_pool() as pool:
        assert os.getpid() not in {await pool.run(workfns.getpid) for _ in range(4)}
        # Each task waits for the other: only two running at once can both see it.
        a = pool.submit(workfns.rendezvous, str(rendezvous_dir), "a", "b", 10)
        b = pool.submit(workfns.rendezvous, str(rendezvous_dir), "b", "a", 10)
        with anyio.fail_after(15):
            assert await a
            assert await b


# -- errors --------------------------------------------------------------------------------------


async def test_exception_keeps_its_type_and_the_remote_traceback(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        with pytest.raises(ValueError, match="nope") as info:
            await pool.run(workfns.raise_value_error, "nope")
        cause = info.value.__cause__
        assert isinstance(cause, procpool.RemoteTraceback)
        assert "raise_value_error" in cause.traceback_text
        assert "workfns.py" in str(cause)


async def test_exceptions_that_cannot_be_rebuilt_arrive_as_remote_error(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        with pytest.raises(procpool.RemoteError) as info:
            await pool.run(workfns.raise_unpicklable)
        assert info.value.type_name == "workfns.UnpicklableError"
        assert "raise_unpicklable" in info.value.traceback_text
        with pytest.raises(procpool.RemoteError, match="KeyboardInterrupt"):
            await pool.run(workfns.raise_keyboard_interrupt)
        assert await pool.run(workfns.square, 3) == 9


async def test_unpicklable_argument_raises_at_the_call_site(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        with pytest.raises(procpool.SerializationError, match="argument"):
            pool.submit(workfns.identity, threading.Lock())
        with pytest.raises(procpool.SerializationError, match="cannot be pickled"):
            pool.submit(workfns.identity, pool)
        assert pool.queued == 0
        assert await pool.run(workfns.square, 3) == 9


async def test_unpicklable_result_fails_that_task(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        with pytest.raises(procpool.SerializationError, match="result"):
            await pool.run(workfns.return_lock)
        assert await pool.run(workfns.square, 3) == 9


async def test_bad_input_is_refused(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        with pytest.raises(TypeError, match="must be a callable"):
            pool.submit(42)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="at least one iterable"):
            pool.map(workfns.square)
        with pytest.raises(ValueError, match="chunksize"):
            pool.map(workfns.square, [1], chunksize=0)


# -- map -----------------------------------------------------------------------------------------


async def test_map_ordered_unordered_chunked_and_async(make_pool: Callable[[], AnyPool]) -> None:
    async def numbers() -> Any:
        for i in range(6):
            await anyio.lowlevel.checkpoint()
            yield i

    async with make_pool() as pool:
        assert [y async for y in pool.map(workfns.square, range(10))] == [x * x for x in range(10)]
        chunked = [y async for y in pool.map(workfns.add, range(10), range(10, 30), chunksize=3)]
        assert chunked == [a + b for a, b in zip(range(10), range(10, 30), strict=False)]
        delays = [0.5, 0.0, 0.0, 0.0]
        unordered = [y async for y in pool.map(workfns.sleep_and_return, delays, range(4), ordered=False)]
        assert sorted(unordered) == [0, 1, 2, 3]
        assert unordered[0] != 0  # the slow first item did not hold the others back
        results = [y async for y in pool.map(workfns.async_square, numbers(), chunksize=2)]
        assert results == [i * i for i in range(6)]
        assert [y async for y in pool.starmap(workfns.add, [(1, 2), (3, 4), (5, 6)], chunksize=2)] == [3, 7, 11]


# Items pulled ahead of the consumer: 3 chunks in flight and the one being filled. With chunksize
# left out, a chunk of an input without a length holds at most 1,024 items (docs/pools.md).
@pytest.mark.parametrize(("chunksize", "pulled_ahead"), [(1, 3 + 1), (None, 4 * 1024)])
async def test_map_pulls_lazily_from_an_endless_iterable(
    make_pool: Callable[[], AnyPool], chunksize: int | None, pulled_ahead: int
) -> None:
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled

    async with (
        make_pool() as pool,
        pool.map(workfns.square, endless(), max_in_flight=3, chunksize=chunksize) as results,
    ):
        got = []
        async for y in results:
            got.append(y)
            if len(got) == 5:
                break
    assert got == [1, 4, 9, 16, 25]
    assert pulled <= 5 + pulled_ahead


async def test_map_error_ends_the_iteration(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        with pytest.raises(ValueError, match="bad"):
            async for _ in pool.map(workfns.raise_value_error, ["bad", "worse"]):
                pass
        assert await pool.run(workfns.square, 2) == 4


# -- cancellation and timeouts ---------------------------------------------------------------------


async def test_cancelled_queued_task_never_runs(make_pool: Callable[[], AnyPool], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    async with make_pool() as pool:
        blockers = [pool.submit(workfns.sleep_and_return, 0.5) for _ in range(WORKERS)]
        with anyio.move_on_after(0.1) as scope:
            await pool.run(workfns.touch_after, str(marker), 0)
        assert scope.cancelled_caught
        for blocker in blockers:
            await blocker
        # Every worker has been free since: the cancelled task would have run by now.
        assert [y async for y in pool.map(workfns.square, range(2 * WORKERS))] == [x * x for x in range(2 * WORKERS)]
    assert not marker.exists()


async def test_task_handle(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        first = pool.submit(workfns.sleep_and_return, 0.3, "first")
        others = [pool.submit(workfns.sleep_and_return, 0.3) for _ in range(WORKERS - 1)]
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
        assert first.result() == "first"
        assert first.exception() is None
        failing = pool.submit(workfns.raise_value_error, "x")
        with pytest.raises(ValueError, match="x"):
            await failing
        assert isinstance(failing.exception(), ValueError)
        for other in others:
            await other


async def test_timeout_raises_and_the_pool_goes_on(make_pool: Callable[[], AnyPool], rendezvous_dir: Path) -> None:
    async with make_pool() as pool:
        with pytest.raises(TimeoutError), anyio.fail_after(0.3):
            await pool.run(workfns.rendezvous, str(rendezvous_dir), "a", "release", 10)
        _finish_rendezvous(rendezvous_dir, "release")  # a Dask worker runs it to its end: let it end now
        assert await pool.run(workfns.square, 3) == 9


async def test_queued_counts_unfinished_tasks_that_have_not_started(make_pool: Callable[[], AnyPool]) -> None:
    """``queued`` covers the tasks waiting for a worker (Dask's pool counts its running tasks too)."""
    async with make_pool() as pool:
        assert pool.queued == 0
        running = [pool.submit(workfns.sleep_and_return, 0.3) for _ in range(WORKERS)]
        waiting = [pool.submit(workfns.square, i) for i in range(3)]
        before = pool.queued
        assert before >= len(waiting)
        waiting[0].cancel()
        assert pool.queued == before - 1
        for task in running:
            await task
        assert [await task for task in waiting[1:]] == [1, 4]
        assert pool.queued == 0


# -- lifecycle -----------------------------------------------------------------------------------


async def test_exit_waits_for_submitted_tasks(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        tasks = [pool.submit(workfns.sleep_and_return, 0.1, i) for i in range(4)]
    assert [t.result() for t in tasks] == [0, 1, 2, 3]


async def test_exit_by_exception_cancels_tasks(make_pool: Callable[[], AnyPool], rendezvous_dir: Path) -> None:
    with pytest.raises(LookupError):
        async with make_pool() as pool:
            running = [
                pool.submit(workfns.rendezvous, str(rendezvous_dir), str(i), "release", 10) for i in range(WORKERS)
            ]
            queued = [pool.submit(workfns.square, i) for i in range(2 * WORKERS)]
            await anyio.sleep(0.1)
            raise LookupError
    assert all(task.cancelled() for task in running + queued)


async def test_closed_pool_refuses_work(make_pool: Callable[[], AnyPool]) -> None:
    pool = make_pool()
    with pytest.raises(procpool.PoolClosedError, match="not started"):
        pool.submit(workfns.square, 1)
    async with pool:
        await pool.aclose()
        await pool.aclose()
        with pytest.raises(procpool.PoolClosedError, match="closed"):
            await pool.run(workfns.square, 1)
    with pytest.raises(procpool.PoolClosedError, match="closed"):
        pool.map(workfns.square, [1])
    with pytest.raises(RuntimeError, match="only once"):
        async with pool:
            pass
