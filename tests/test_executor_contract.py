"""``pool.executor`` honours the `concurrent.futures.Executor` contract.

The behaviours follow CPython's own executor tests (Lib/test/test_concurrent_futures): submit,
map (with timeout and chunksize), future states and cancellation, wait, as_completed and shutdown;
plus procpool's crash behaviour, where only the crashed task's future fails. The pool runs in an
event loop on a background thread (an anyio blocking portal), and the tests drive it from the main
thread, as plain threaded code would.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import anyio.from_thread
import pytest

import procpool
import workfns


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def executor(request: pytest.FixtureRequest) -> Iterator[procpool.PoolExecutor]:
    backend, options = request.param
    with (
        anyio.from_thread.start_blocking_portal(backend, options) as portal,
        portal.wrap_async_context_manager(procpool.Pool(2)) as pool,
    ):
        yield pool.executor


def _wait_until_running(future: futures.Future[Any]) -> None:
    deadline = time.monotonic() + 10
    while not future.running():
        assert time.monotonic() < deadline, "the future never started"
        time.sleep(0.005)


def test_submit(executor: procpool.PoolExecutor) -> None:
    future = executor.submit(pow, 2, 8)
    assert future.result(timeout=10) == 256


def test_submit_keyword(executor: procpool.PoolExecutor) -> None:
    assert executor.submit(workfns.mul, 2, y=8).result(timeout=10) == 16
    assert executor.submit(workfns.capture, 1, self=2, fn=3).result(timeout=10) == ((1,), {"self": 2, "fn": 3})
    with pytest.raises(TypeError):
        executor.submit(fn=workfns.capture, arg=1)  # type: ignore[call-arg]


def test_map(executor: procpool.PoolExecutor) -> None:
    expected = list(map(pow, range(10), range(10)))
    assert list(executor.map(pow, range(10), range(10))) == expected
    assert list(executor.map(pow, range(10), range(10), chunksize=3)) == expected
    with pytest.raises(ValueError, match="chunksize"):
        executor.map(pow, range(3), range(3), chunksize=0)


def test_map_exception(executor: procpool.PoolExecutor) -> None:
    results = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(results) == (0, 1)
    assert next(results) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_timeout(executor: procpool.PoolExecutor) -> None:
    results = []
    with pytest.raises(futures.TimeoutError):
        for result in executor.map(time.sleep, [0, 0, 1.5], timeout=0.5):
            results.append(result)
    assert results == [None, None]


def test_futures_states_and_cancel(executor: procpool.PoolExecutor) -> None:
    blockers = [executor.submit(time.sleep, 0.5) for _ in range(2)]
    pending = executor.submit(pow, 2, 3)
    for blocker in blockers:
        _wait_until_running(blocker)
    assert not pending.running()
    assert pending.cancel()
    assert pending.cancelled()
    assert pending.done()
    with pytest.raises(futures.CancelledError):
        pending.result()
    assert not blockers[0].cancel()  # running futures cannot be cancelled
    assert [blocker.result(timeout=10) for blocker in blockers] == [None, None]
    assert executor.submit(pow, 2, 3).result(timeout=10) == 8


def test_cancelled_pending_future_counts_as_done_for_wait(executor: procpool.PoolExecutor) -> None:
    """Its task never starts, so no worker will report it: the cancel itself must wake waiters."""
    blockers = [executor.submit(time.sleep, 0.5) for _ in range(2)]
    pending = executor.submit(pow, 2, 3)
    assert pending.cancel()
    start = time.monotonic()
    assert futures.wait([pending], timeout=5).done == {pending}
    assert list(futures.as_completed([pending], timeout=5)) == [pending]
    assert time.monotonic() - start < 2  # a liveness bound: the wait returned, well before its timeout
    assert [blocker.result(timeout=10) for blocker in blockers] == [None, None]


def test_exception_keeps_type_and_cause(executor: procpool.PoolExecutor) -> None:
    future = executor.submit(workfns.raise_value_error, "oops")
    error = future.exception(timeout=10)
    assert isinstance(error, ValueError)
    assert isinstance(error.__cause__, procpool.RemoteTraceback)
    # StopIteration too, as from ProcessPoolExecutor: only an await cannot raise it (see errors.md).
    with pytest.raises(StopIteration) as stopped:
        executor.submit(workfns.raise_stop, StopIteration, 3).result(timeout=10)
    assert stopped.value.value == 3


def test_wait_first_completed(executor: procpool.PoolExecutor) -> None:
    quick = executor.submit(workfns.mul, 21, 2)
    slow = executor.submit(time.sleep, 0.8)
    done, not_done = futures.wait([quick, slow], timeout=10, return_when=futures.FIRST_COMPLETED)
    assert done == {quick}
    assert not_done == {slow}
    slow.result(timeout=10)


def test_wait_first_exception(executor: procpool.PoolExecutor) -> None:
    failing = executor.submit(workfns.raise_value_error, "x")
    slow = executor.submit(time.sleep, 0.8)
    done, not_done = futures.wait([failing, slow], timeout=10, return_when=futures.FIRST_EXCEPTION)
    assert done == {failing}
    assert not_done == {slow}
    slow.result(timeout=10)


def test_wait_all_completed_and_timeout(executor: procpool.PoolExecutor) -> None:
    quick = [executor.submit(workfns.mul, i, 2) for i in range(4)]
    done, not_done = futures.wait(quick, timeout=10, return_when=futures.ALL_COMPLETED)
    assert done == set(quick)
    assert not not_done
    slow = executor.submit(time.sleep, 0.8)
    done, not_done = futures.wait([slow], timeout=0.2)
    assert not_done == {slow}
    slow.result(timeout=10)


def test_as_completed(executor: procpool.PoolExecutor) -> None:
    submitted = [executor.submit(workfns.mul, i, 3) for i in range(6)]
    assert sorted(f.result() for f in futures.as_completed(submitted + submitted[:2], timeout=10)) == [
        0,
        3,
        6,
        9,
        12,
        15,
    ]
    slow = executor.submit(time.sleep, 0.8)
    with pytest.raises(futures.TimeoutError):
        list(futures.as_completed([slow], timeout=0))
    slow.result(timeout=10)


def test_crash_fails_only_its_future(executor: procpool.PoolExecutor) -> None:
    innocent = executor.submit(workfns.sleep_and_return, 0.3, "fine")
    dying = executor.submit(workfns.kill_self)
    error = dying.exception(timeout=10)
    assert isinstance(error, procpool.WorkerCrashedError)
    assert error.signal_name == signal.Signals.SIGKILL.name
    assert innocent.result(timeout=10) == "fine"
    assert list(executor.map(abs, [-1, -2, -3])) == [1, 2, 3]


def test_shutdown_refuses_new_work_and_waits(executor: procpool.PoolExecutor) -> None:
    running = executor.submit(workfns.sleep_and_return, 0.3, "finished")
    executor.shutdown(wait=True)
    assert running.done()
    assert running.result() == "finished"
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(pow, 2, 2)


def test_shutdown_cancel_futures(executor: procpool.PoolExecutor) -> None:
    submitted = [executor.submit(time.sleep, 0.3) for _ in range(6)]
    _wait_until_running(submitted[0])
    executor.shutdown(wait=True, cancel_futures=True)
    cancelled = [f for f in submitted if f.cancelled()]
    finished = [f for f in submitted if not f.cancelled()]
    assert cancelled  # the queued ones
    assert all(f.done() and f.exception() is None for f in finished)


def test_context_manager_shuts_down(executor: procpool.PoolExecutor) -> None:
    with executor as ex:
        future = ex.submit(workfns.mul, 6, 7)
    assert future.done()
    assert future.result() == 42


def test_repr_names_its_pool_and_state(executor: procpool.PoolExecutor) -> None:
    assert re.fullmatch(r"<procpool\.PoolExecutor open of <procpool\.Pool workers=2 .* open>>", repr(executor))
    executor.shutdown()
    assert repr(executor).startswith("<procpool.PoolExecutor shut down of <procpool.Pool workers=2 ")


@pytest.mark.anyio
async def test_repr_once_its_pool_is_closed(anyio_backend: Any) -> None:
    async with procpool.Pool(1) as pool:
        executor = pool.executor
    assert re.fullmatch(r"<procpool\.PoolExecutor closed with its pool of <procpool\.Pool .* closed>>", repr(executor))


@pytest.mark.anyio
async def test_run_in_executor_from_the_loop_thread(anyio_backend: Any) -> None:
    if anyio_backend[0] != "asyncio":
        pytest.skip("run_in_executor is asyncio's API")
    import asyncio

    loop = asyncio.get_running_loop()
    async with procpool.Pool(2) as pool:
        assert await loop.run_in_executor(pool.executor, workfns.mul, 6, 7) == 42
        results = await asyncio.gather(*(loop.run_in_executor(pool.executor, workfns.square, i) for i in range(5)))
        assert results == [0, 1, 4, 9, 16]
        with pytest.raises(RuntimeError, match="event loop's thread"):
            pending = pool.executor.submit(time.sleep, 0.5)
            pool.executor.shutdown(wait=True)
        await asyncio.wrap_future(pending)
