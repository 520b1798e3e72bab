"""A pool opened with ``await pool.open()`` and closed with ``await pool.aclose()``, from any task
of its event loop: what notebooks and REPLs need, where each cell or statement runs in a task of
its own. Each helper call `_in_a_task_of_its_own` stands for a cell."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import psutil
import pytest

import lifecycle_fns
import procpool
import workfns
from procpool.testing import InlinePool
from script_env import script_env

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

T = TypeVar("T")
_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


async def _in_a_task_of_its_own(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await fn(*args)`` in a new task, which has ended when this returns."""
    results: list[T] = []

    async def cell() -> None:
        results.append(await fn(*args))

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(cell)
    return results[0]


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = anyio.current_time() + timeout
    while not condition():
        assert anyio.current_time() < deadline, f"timed out waiting until {what}"
        await anyio.sleep(0.005)


def _workers() -> list[int]:
    """The pids of the live processes under this one, less multiprocessing's own helpers."""
    me = os.getpid()
    pids = []
    for child in psutil.Process(me).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if child.ppid() == me and any(name in " ".join(child.cmdline()) for name in _HELPERS):
                continue
            pids.append(child.pid)
    return pids


def _assert_no_worker_left() -> None:
    """Every worker is gone: at once, bar the moment the forkserver takes to reap one."""
    deadline = time.monotonic() + 2
    while _workers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _workers()


async def test_pool_opened_in_one_task_is_used_and_closed_in_others() -> None:
    pool = await _in_a_task_of_its_own(procpool.Pool(1).open)
    assert repr(pool).endswith(" open>")
    assert await _in_a_task_of_its_own(pool.run, workfns.square, 7) == 49
    task = await _in_a_task_of_its_own(_submit, pool, 8)
    assert await _in_a_task_of_its_own(_await, task) == 64
    future = pool.executor.submit(workfns.square, 9)
    assert await _in_a_task_of_its_own(anyio.to_thread.run_sync, future.result) == 81
    await _in_a_task_of_its_own(pool.aclose)
    assert repr(pool).endswith(" closed>")
    _assert_no_worker_left()


async def _submit(pool: procpool.Pool, x: int) -> procpool.Task[int]:
    return pool.submit(workfns.square, x)


async def _await(task: procpool.Task[T]) -> T:
    return await task


async def test_aclose_from_another_task_waits_for_the_submitted_tasks(tmp_path: Path) -> None:
    pool = await procpool.Pool(1).open()
    go = tmp_path / "go"
    task = pool.submit(lifecycle_fns.wait_for_file, str(go), "done")
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(pool.aclose)
        await _until(lambda: repr(pool).endswith(" closing>"), "the pool closes")
        with pytest.raises(procpool.PoolClosedError):
            pool.submit(workfns.square, 1)
        assert not task.done()
        go.touch()
    assert await task == "done"
    assert repr(pool).endswith(" closed>")
    _assert_no_worker_left()


async def test_aclose_cancelled_while_it_waits_cancels_the_tasks_and_stops_the_workers() -> None:
    pool = await procpool.Pool(1).open()
    task = pool.submit(workfns.sleep_and_return, 60, "never")
    await _until(task.running, "the task runs")
    async with anyio.create_task_group() as task_group:  # the cell that closes is interrupted
        task_group.start_soon(pool.aclose)
        await _until(lambda: repr(pool).endswith(" closing>"), "the pool closes")
        task_group.cancel_scope.cancel()
    assert task.cancelled()
    assert repr(pool).endswith(" closed>")
    _assert_no_worker_left()


async def test_cancelled_caller_kills_only_its_worker_and_the_pool_goes_on() -> None:
    pool = await procpool.Pool(1).open()
    first = await pool.run(workfns.getpid)
    async with anyio.create_task_group() as task_group:  # the cell running a long task is interrupted
        task_group.start_soon(pool.run, workfns.sleep_and_return, 60)
        await _until(lambda: pool.stats().busy == 1, "the long task runs")
        task_group.cancel_scope.cancel()
    replacement = await _in_a_task_of_its_own(pool.run, workfns.getpid)
    assert replacement != first
    assert replacement in _workers()  # with, once a worker was replaced, a warm spare
    await _until(lambda: first not in _workers(), "the killed worker is gone")
    await pool.aclose()
    _assert_no_worker_left()


async def test_a_pool_opens_only_once() -> None:
    pool = await procpool.Pool(1).open()
    with pytest.raises(RuntimeError, match="opened already"):
        await pool.open()
    with pytest.raises(RuntimeError, match="opens only once"):
        async with pool:
            pass
    await pool.aclose()
    with pytest.raises(RuntimeError, match="opened already"):
        await pool.open()
    async with procpool.Pool(1) as entered:
        with pytest.raises(RuntimeError, match="opened already"):
            await entered.open()


async def test_aclose_twice_is_harmless_and_a_closed_pool_refuses_work() -> None:
    pool = await procpool.Pool(1).open()
    await pool.aclose()
    await pool.aclose()
    assert repr(pool).endswith(" closed>")
    with pytest.raises(procpool.PoolClosedError, match="aclose"):
        await pool.run(workfns.square, 1)
    with pytest.raises(procpool.PoolClosedError):
        pool.submit(workfns.square, 1)
    with pytest.raises(procpool.PoolClosedError):
        await pool.map(workfns.square, [1])


async def test_open_raises_what_starting_the_workers_raised() -> None:
    pool = procpool.Pool(1, initializer=workfns.fail_initializer)
    with pytest.raises(procpool.InitializerError):
        await pool.open()
    assert repr(pool).endswith(" closed>")
    await pool.aclose()
    _assert_no_worker_left()


async def test_open_cancelled_while_the_workers_start_stops_them(tmp_path: Path) -> None:
    go = tmp_path / "never"  # the initializer waits for it: the workers never get ready
    pool = procpool.Pool(2, initializer=lifecycle_fns.wait_for_file, initargs=(str(go),))
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(pool.open)
        await _until(lambda: len(_workers()) == 2, "the workers start")
        task_group.cancel_scope.cancel()
    assert repr(pool).endswith(" closed>")
    with pytest.raises(procpool.PoolClosedError):
        await pool.run(workfns.square, 1)
    _assert_no_worker_left()


async def test_open_in_a_cancelled_scope_leaves_the_pool_closed() -> None:
    pool = procpool.Pool(1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await pool.open()
    assert scope.cancelled_caught
    assert repr(pool).endswith(" closed>")
    _assert_no_worker_left()


async def test_every_pool_sharing_the_facade_opens_and_closes_across_tasks() -> None:
    pool = await _in_a_task_of_its_own(InlinePool().open)
    assert await _in_a_task_of_its_own(pool.run, workfns.square, 3) == 9
    await _in_a_task_of_its_own(pool.aclose)
    assert repr(pool).endswith(" closed>")


@pytest.mark.parametrize(
    ("backend", "options"),
    [("asyncio", {}), ("asyncio", {"use_uvloop": True}), ("trio", {})],
    ids=["asyncio", "uvloop", "trio"],
)
def test_pool_left_open_is_closed_when_its_event_loop_ends(backend: str, options: dict[str, Any]) -> None:
    async def main() -> procpool.Pool:
        pool = await procpool.Pool(1).open()
        task = pool.submit(workfns.sleep_and_return, 60)
        await _until(task.running, "the task runs")
        return pool  # never closed

    pool = anyio.run(main, backend=backend, backend_options=options)
    assert repr(pool).endswith(" closed>")
    _assert_no_worker_left()


@pytest.mark.parametrize("how", ["async with", "open"])
def test_trio_run_inside_a_running_asyncio_loop_is_refused_naming_the_alternative(how: str) -> None:
    """IPython's ``%autoawait trio`` runs each cell with trio.run, called inside the kernel's
    running asyncio loop: a pool cannot work there, and says what to do instead."""
    import trio

    pool = procpool.Pool(1)

    async def use_the_pool() -> None:
        if how == "open":
            await pool.open()
            await pool.run(abs, -1)
        else:
            async with pool:
                await pool.run(abs, -1)

    async def cell() -> None:
        trio.run(use_the_pool)

    with pytest.raises(RuntimeError, match="autoawait asyncio"):
        asyncio.run(cell())
    assert repr(pool).endswith(" new>")  # nothing started
    _assert_no_worker_left()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "statement",
    ["pool = await procpool.Pool(2).open()", "await procpool.run_sync(abs, -1)"],
    ids=["open", "default-pool"],
)
def test_leaving_python_m_asyncio_with_a_pool_open_stops_it(statement: str) -> None:
    """The asyncio REPL stops its loop without ending its tasks: the pool is ended at exit, rather
    than the interpreter waiting forever for the threads that started its workers."""
    repl = subprocess.Popen(
        [sys.executable, "-m", "asyncio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=script_env(),
    )
    try:
        assert repl.stdin is not None
        assert repl.stdout is not None
        repl.stdin.write(f"import procpool\n{statement}\nprint('ready')\n")
        repl.stdin.flush()
        while "ready" not in (line := repl.stdout.readline()):
            assert line, "the REPL ended early"
        processes = psutil.Process(repl.pid).children(recursive=True)  # forkserver, workers...
        assert len(processes) >= 3
        repl.stdin.close()  # end of input: the REPL exits
        assert repl.wait(timeout=20) == 0
        _, alive = psutil.wait_procs(processes, timeout=10)
        assert not alive
    finally:
        repl.kill()
        repl.wait()
        repl.stdout.close()  # type: ignore[union-attr]
