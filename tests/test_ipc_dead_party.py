"""procpool's IPC objects when a process that uses them is SIGKILLed: the survivors never hang.

Every call made with a timeout, or inside a cancel scope, returns or raises within its limit plus
`SLACK`; `Condition.notify` skips a killed waiter; a killed party breaks a `Barrier`; a `Lock`
held by a killed process stays held, as documented. Blocking (sync) calls run in threads, next to
the awaited ones.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
import psutil
import pytest

import procpool
import workfns
from ipc_support import no_thread_left  # noqa: F401 (autouse fixture)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

LIMIT = 0.3  # the timeout, or cancel scope, of each call
SLACK = 0.5  # how long after its limit a call may end


@contextlib.contextmanager
def ends_within(limit: float) -> Iterator[None]:
    start = time.monotonic()
    yield
    elapsed = time.monotonic() - start
    assert elapsed <= limit + SLACK, f"took {elapsed:.2f} s, for a limit of {limit} s"


async def killed(process: procpool.Process) -> None:
    process.kill()
    await process.join()
    assert process.exitcode == -signal.SIGKILL


async def all_at_once(*checks: Callable[[], Awaitable[Any]]) -> None:
    async with anyio.create_task_group() as tg:
        for check in checks:
            tg.start_soon(check)


def in_thread(check: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    """``check`` run in a thread: there procpool's objects block, as in a child process."""
    return functools.partial(anyio.to_thread.run_sync, check)


async def cancelled_within_limit(call: Callable[[], Awaitable[Any]]) -> None:
    with ends_within(LIMIT), anyio.move_on_after(LIMIT) as scope:
        await call()
    assert scope.cancelled_caught


async def waiting_parties(barrier: procpool.Barrier, count: int) -> None:
    while barrier.n_waiting < count:
        await anyio.sleep(0.005)


async def test_queue_pipe_lock_semaphore_and_event_outlive_a_killed_party() -> None:
    q: procpool.Queue[str] = procpool.Queue(maxsize=1)
    mine, theirs = procpool.Pipe()
    lock, semaphore, event = procpool.Lock(), procpool.Semaphore(1), procpool.Event()
    report: procpool.Queue[str] = procpool.Queue()
    with anyio.fail_after(20):
        async with procpool.Process(workfns.ipc_hold_then_block, (q, theirs, lock, semaphore, report)) as child:
            assert await report.get() == "holding"
            await killed(child)

        async def put_times_out() -> None:
            with ends_within(LIMIT), pytest.raises(queue.Full):
                await q.put("x", timeout=LIMIT)

        async def get_times_out() -> None:
            with ends_within(LIMIT), pytest.raises(queue.Empty):
                await q.get(timeout=LIMIT)

        async def nothing_to_receive() -> None:
            with ends_within(LIMIT):
                assert await mine.poll(LIMIT) is False

        async def lock_stays_held() -> None:
            with ends_within(LIMIT):
                assert await lock.acquire(timeout=LIMIT) is False

        async def no_unit_left() -> None:
            with ends_within(LIMIT):
                assert await semaphore.acquire(timeout=LIMIT) is False

        async def never_set() -> None:
            with ends_within(LIMIT):
                assert await event.wait(LIMIT) is False

        async def in_lock() -> None:
            async with lock:
                pytest.fail("took a lock that a killed process holds")  # pragma: no cover

        def blocking_put_times_out() -> None:
            with ends_within(LIMIT), pytest.raises(queue.Full):
                q.put("x", timeout=LIMIT)

        def blocking_calls_return_false(call: Callable[[float], bool]) -> None:
            with ends_within(LIMIT):
                assert call(LIMIT) is False

        await all_at_once(
            put_times_out,
            functools.partial(cancelled_within_limit, functools.partial(q.put, "x")),
            nothing_to_receive,
            functools.partial(cancelled_within_limit, mine.recv),
            lock_stays_held,
            functools.partial(cancelled_within_limit, in_lock),
            no_unit_left,
            functools.partial(cancelled_within_limit, semaphore.acquire),
            never_set,
            functools.partial(cancelled_within_limit, event.wait),
            in_thread(blocking_put_times_out),
            *[
                in_thread(functools.partial(blocking_calls_return_false, call))
                for call in (mine.poll, event.wait, functools.partial(lock.acquire, True))
            ],
        )
        assert lock.locked()
        assert semaphore.get_value() == 0

        assert await q.get() == "first"

        def blocking_get_times_out() -> None:
            with ends_within(LIMIT), pytest.raises(queue.Empty):
                q.get(timeout=LIMIT)

        await all_at_once(
            get_times_out, functools.partial(cancelled_within_limit, q.get), in_thread(blocking_get_times_out)
        )
        theirs.close()  # the killed child's copy is gone with it: the end of file
        with ends_within(LIMIT), pytest.raises(EOFError):
            await mine.recv()
    mine.close()


async def test_condition_notify_skips_a_killed_waiter() -> None:
    condition, flag = procpool.Condition(), procpool.Event()
    report: procpool.Queue[object] = procpool.Queue()
    with anyio.fail_after(20):
        async with (
            procpool.Process(workfns.ipc_condition_waiter, (condition, flag, report)) as doomed,
            procpool.Process(workfns.ipc_condition_waiter, (condition, flag, report)),
        ):
            assert [await report.get() for _ in range(2)] == ["waiting", "waiting"]
            async with condition:  # free again: both children let it go in wait()
                pass
            await killed(doomed)
            flag.set()
            async with condition:
                with ends_within(LIMIT), anyio.move_on_after(LIMIT) as scope:
                    await condition.notify()
            assert not scope.cancelled_caught
            with ends_within(LIMIT):
                assert await report.get() == ("done", True)  # the live waiter was woken, not the killed one

        async with condition:
            with ends_within(LIMIT), anyio.move_on_after(LIMIT) as scope:
                await condition.notify_all()  # only the killed waiter is left: it is skipped
            assert not scope.cancelled_caught
            await cancelled_within_limit(condition.wait)
            assert await condition.acquire(block=False) is False  # taken back by the cancelled wait

        def blocking_calls() -> None:
            with condition:
                with ends_within(LIMIT):
                    condition.notify_all()
                with ends_within(LIMIT):
                    assert condition.wait(LIMIT) is False

        await in_thread(blocking_calls)()
    assert await condition.acquire(block=False) is True
    condition.release()


async def test_condition_whose_lock_holder_was_killed() -> None:
    condition = procpool.Condition()
    with anyio.fail_after(20):
        async with condition, procpool.Process(workfns.ipc_take_then_die, (condition,)):
            with pytest.raises(procpool.LockHolderDiedError):
                while True:  # until the child took the lock during a wait, and died with it
                    with ends_within(LIMIT):
                        await condition.wait(LIMIT)
        # `async with` could not release the lock it no longer holds; it stays held.
        assert await condition.acquire(block=False) is False

        condition = procpool.Condition()
        scope = anyio.CancelScope()

        async def wait_until_cancelled(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with scope:
                async with condition:
                    task_status.started()
                    await condition.wait()  # the child takes the lock meanwhile, and dies with it

        async with anyio.create_task_group() as tg:
            await tg.start(wait_until_cancelled)
            async with procpool.Process(workfns.ipc_take_then_die, (condition,)) as child:
                await child.join()
            scope.cancel()
            cancelled_at = time.monotonic()
        assert time.monotonic() - cancelled_at <= SLACK
        assert scope.cancelled_caught
        assert await condition.acquire(block=False) is False


async def test_condition_whose_lock_holder_was_killed_before_it_was_recorded() -> None:
    # Killed in the instant between taking the lock and recording itself (or clearing its record
    # and giving the lock back): the lock stays taken by nobody known, which the wait tells apart
    # from a live holder by how long it lasts.
    condition = procpool.Condition()
    with anyio.fail_after(20):
        async with condition, procpool.Process(workfns.ipc_take_then_die_unrecorded, (condition,)):
            with pytest.raises(procpool.LockHolderDiedError, match="unrecorded"):
                while True:  # until the child took the lock during a wait, and died with it
                    with ends_within(LIMIT):
                        await condition.wait(LIMIT)
        assert await condition.acquire(block=False) is False


async def test_a_killed_party_breaks_a_barrier() -> None:
    report: procpool.Queue[tuple[str, object]] = procpool.Queue()
    with anyio.fail_after(20):
        # Killed while it waits; the last party to arrive finds the barrier broken.
        barrier = procpool.Barrier(3)
        async with (
            procpool.Process(workfns.ipc_barrier_wait, (barrier, report)) as doomed,
            procpool.Process(workfns.ipc_barrier_wait, (barrier, report)),
        ):
            await waiting_parties(barrier, 2)
            await killed(doomed)
            with ends_within(LIMIT), pytest.raises(procpool.BrokenBarrierError), anyio.fail_after(LIMIT):
                await barrier.wait()
            with ends_within(LIMIT):
                assert await report.get() == ("broken", None)  # the other survivor too
        assert barrier.broken

        # Killed while it waits; the survivors waiting with it notice.
        barrier = procpool.Barrier(4)
        async with procpool.Process(workfns.ipc_barrier_wait, (barrier, report)) as doomed:
            await waiting_parties(barrier, 1)
            await killed(doomed)

        async def cancel_scope_party() -> None:
            with ends_within(LIMIT), pytest.raises(procpool.BrokenBarrierError), anyio.fail_after(LIMIT):
                await barrier.wait()

        def blocking_party() -> None:
            with ends_within(LIMIT), pytest.raises(procpool.BrokenBarrierError):
                barrier.wait(LIMIT)

        await all_at_once(cancel_scope_party, in_thread(blocking_party))
        assert barrier.broken

        # Killed while it holds the barrier's lock (in the action, which runs in the last to arrive).
        barrier = procpool.Barrier(2, action=workfns.kill_self)
        async with procpool.Process(workfns.ipc_barrier_wait_last, (barrier, report)):
            # The limit includes the child's start.
            with pytest.raises(procpool.BrokenBarrierError), anyio.fail_after(10):
                await barrier.wait()
        assert barrier.broken
        with ends_within(LIMIT), pytest.raises(procpool.BrokenBarrierError):
            await barrier.wait(LIMIT)
        with ends_within(LIMIT), pytest.raises(procpool.BrokenBarrierError):
            await barrier.reset()


async def test_shared_dict_and_list_outlive_a_killed_party() -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with anyio.fail_after(20):
        async with procpool.Manager() as manager:
            # The manager process; multiprocessing's own helpers are direct children of this one.
            (server,) = [
                p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.ppid() != os.getpid()
            ]
            scores, log = await manager.dict(), await manager.list()
            async with procpool.Process(workfns.ipc_shared_writes, (scores, log, 10**9)) as writer:
                while await scores.len() < 10:
                    await anyio.sleep(0.005)
                await killed(writer)  # killed in the middle of its writes
            with ends_within(LIMIT), anyio.fail_after(LIMIT):
                await scores.set("after", await log.len())

            server.suspend()  # an unresponsive manager: a call ends with its cancel scope
            while server.status() != psutil.STATUS_STOPPED:  # SIGSTOP takes effect a little later
                await anyio.sleep(0.005)
            try:
                await cancelled_within_limit(functools.partial(scores.set, "k", 1))
            finally:
                server.resume()
            assert await scores.get("k") in (None, 1)  # the next call gets its own answer
            await scores.set("k", 2)
            assert await scores.get("k") == 2

            server.kill()
            server.wait(10)
            with ends_within(LIMIT), pytest.raises(ConnectionError), anyio.fail_after(LIMIT):
                await scores.get("k")
