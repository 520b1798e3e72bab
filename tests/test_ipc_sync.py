"""procpool's Lock, Semaphore, BoundedSemaphore, Event, Condition and Barrier across processes."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

import procpool
import workfns
from ipc_support import no_thread_left  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.anyio


async def test_lock_excludes_two_children_and_the_parent(tmp_path: Path) -> None:
    lock = procpool.Lock()
    log = tmp_path / "log"
    with anyio.fail_after(20):
        async with (
            procpool.Process(workfns.ipc_locked_appends, (lock, str(log), 15)),
            procpool.Process(workfns.ipc_locked_appends, (lock, str(log), 15)),
        ):
            for _ in range(15):
                async with lock:
                    with log.open("a") as f:
                        f.write("parent in\n")
                    await anyio.sleep(0.002)
                    with log.open("a") as f:
                        f.write("parent out\n")
    lines = log.read_text().splitlines()
    assert len(lines) == 90
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.endswith(" in")
        assert leave == enter.replace(" in", " out")  # nobody else got in between
    assert not lock.locked()


async def test_cancelled_acquire_takes_nothing() -> None:
    lock = procpool.Lock()
    await lock.acquire()
    assert lock.locked()
    with anyio.move_on_after(0.05) as scope:
        await lock.acquire()
    assert scope.cancelled_caught
    assert await lock.acquire(timeout=0.05) is False
    lock.release()
    assert not lock.locked()
    with pytest.raises(ValueError, match="too many"):
        lock.release()
    semaphore = procpool.Semaphore(2)
    async with semaphore:
        assert semaphore.get_value() == 1
        with anyio.move_on_after(0.02):
            async with semaphore, semaphore:
                pytest.fail("a third unit of a semaphore of two")  # pragma: no cover
        assert semaphore.get_value() == 1  # the cancelled acquire gave back nothing it had not taken
    assert semaphore.get_value() == 2


async def test_semaphore_admits_two_children_at_a_time() -> None:
    semaphore = procpool.BoundedSemaphore(2)
    report: procpool.Queue[int] = procpool.Queue()
    # The parent holds one unit: the children go one at a time.
    async with (
        semaphore,
        procpool.Process(workfns.ipc_hold_semaphore, (semaphore, report, 0.15)),
        procpool.Process(workfns.ipc_hold_semaphore, (semaphore, report, 0.15)),
    ):
        with anyio.fail_after(20):
            first = await report.get()
            await anyio.sleep(0.05)
            assert report.empty()  # the second child waits for the unit the first holds
            second = await report.get()
            assert first != second
    assert semaphore.get_value() == 2
    with pytest.raises(ValueError, match="released too many times"):
        semaphore.release()


async def test_event_wakes_two_children_and_a_parent_task() -> None:
    event = procpool.Event()
    report: procpool.Queue[tuple[str, object]] = procpool.Queue()
    woken: list[bool] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def parent_waiter() -> None:
                woken.append(await event.wait())

            tg.start_soon(parent_waiter)
            async with (
                procpool.Process(workfns.ipc_wait_event, (event, report)),
                procpool.Process(workfns.ipc_wait_event, (event, report)),
            ):
                assert [(await report.get())[0] for _ in range(2)] == ["ready", "ready"]
                assert await event.wait(0.05) is False
                event.set()
                assert [await report.get() for _ in range(2)] == [("woken", True)] * 2
    assert woken == [True]
    assert event.is_set()
    event.clear()
    assert not event.is_set()
    assert await event.wait(0.01) is False


async def test_condition_notifies_children_and_a_cancelled_wait_keeps_the_lock() -> None:
    condition = procpool.Condition()
    flag = procpool.Event()
    report: procpool.Queue[object] = procpool.Queue()
    with anyio.fail_after(20):
        async with (
            procpool.Process(workfns.ipc_condition_waiter, (condition, flag, report)),
            procpool.Process(workfns.ipc_condition_waiter, (condition, flag, report)),
        ):
            assert [await report.get() for _ in range(2)] == ["waiting", "waiting"]
            async with condition:
                await condition.notify()  # a spurious wake-up: the flag is not set, it waits again
            async with condition:
                flag.set()
                await condition.notify_all()
            assert [await report.get() for _ in range(2)] == [("done", True)] * 2

        async with condition:
            with anyio.move_on_after(0.05) as scope:
                await condition.wait()
            assert scope.cancelled_caught
            assert await condition.acquire(block=False) is False  # taken back before the cancellation went on
            assert await condition.wait(0.01) is False
            assert await condition.wait_for(flag.is_set, 0.01) is True
    assert await condition.acquire(block=False) is True
    condition.release()
    with pytest.raises(RuntimeError, match="lock"):
        await condition.wait()
    with pytest.raises(RuntimeError, match="lock"):
        await condition.notify()


async def test_barrier_between_two_children_and_the_parent() -> None:
    barrier = procpool.Barrier(3)
    report: procpool.Queue[tuple[str, object]] = procpool.Queue()
    with anyio.fail_after(20):
        for _ in range(2):  # the barrier can be used again
            async with (
                procpool.Process(workfns.ipc_barrier_wait, (barrier, report)),
                procpool.Process(workfns.ipc_barrier_wait, (barrier, report)),
            ):
                index = await barrier.wait()
                indexes = {index, *[(await report.get())[1] for _ in range(2)]}
            assert indexes == {0, 1, 2}
    assert (barrier.parties, barrier.n_waiting, barrier.broken) == (3, 0, False)


async def test_cancelled_or_timed_out_barrier_wait_breaks_the_barrier() -> None:
    barrier = procpool.Barrier(3)
    report: procpool.Queue[tuple[str, object]] = procpool.Queue()
    with anyio.fail_after(20):
        async with procpool.Process(workfns.ipc_barrier_wait, (barrier, report)):
            with anyio.move_on_after(0.2):
                await barrier.wait()
            assert await report.get() == ("broken", None)  # the child was released, with the error
        assert barrier.broken
        with pytest.raises(threading.BrokenBarrierError):
            await barrier.wait()
        await barrier.reset()
        assert not barrier.broken
        with pytest.raises(threading.BrokenBarrierError):
            await barrier.wait(0.05)
        await barrier.reset()
        await barrier.abort()
        assert barrier.broken


def test_sync_faces_and_bad_arguments() -> None:
    lock = procpool.Lock()
    with lock:
        assert lock.locked()
        assert lock.acquire(block=False) is False
    assert lock.acquire(timeout=0.01) is True
    lock.release()
    event = procpool.Event()
    event.set()
    assert event.wait() is True
    barrier = procpool.Barrier(1, action=lambda: None)
    assert barrier.wait() == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="value"):
            procpool.Semaphore(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parties"):
        procpool.Barrier(0)
    with pytest.raises(TypeError, match="action"):
        procpool.Barrier(2, action=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Lock"):
        procpool.Condition(threading.Lock())  # type: ignore[arg-type]


async def test_blocking_with_is_refused_in_async_code() -> None:
    lock = procpool.Lock()
    with pytest.raises(RuntimeError, match="async with"), lock:
        pass  # pragma: no cover
    assert not lock.locked()
