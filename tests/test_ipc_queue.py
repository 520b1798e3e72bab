"""procpool.Queue between the parent (awaiting) and children (blocking)."""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import queue
import random
import threading

import anyio
import cloudpickle
import pytest

import procpool
import workfns
from ipc_support import no_thread_left  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.anyio


async def test_producers_and_consumers_on_both_sides() -> None:
    """Two parent tasks and two child processes put; two parent tasks and two children get."""
    jobs: procpool.Queue[int] = procpool.Queue()
    results: procpool.Queue[int] = procpool.Queue()
    received: list[int] = []

    async def consume() -> None:
        async for item in results:
            received.append(item)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as consumers:
            consumers.start_soon(consume)
            consumers.start_soon(consume)
            async with (
                procpool.Process(workfns.ipc_double_until_closed, (jobs, results)) as doubler_1,
                procpool.Process(workfns.ipc_double_until_closed, (jobs, results)) as doubler_2,
            ):
                async with (
                    procpool.Process(workfns.ipc_put_range, (jobs, 0, 300)),
                    procpool.Process(workfns.ipc_put_range, (jobs, 300, 600)),
                    anyio.create_task_group() as producers,
                ):
                    for start in (600, 900):
                        producers.start_soon(_put_range, jobs, start, start + 300)
                jobs.close()  # every producer is done: the doublers drain what is left, then stop
            assert (doubler_1.exitcode, doubler_2.exitcode) == (0, 0)
            results.close()
    assert sorted(received) == [2 * i for i in range(1200)]


async def _put_range(q: procpool.Queue[int], start: int, stop: int) -> None:
    for i in range(start, stop):
        await q.put(i)


async def test_cancelled_gets_lose_no_item() -> None:
    """Gets cancelled at random moments while two children put: every item arrives exactly once."""
    q: procpool.Queue[int] = procpool.Queue()
    received: list[int] = []
    rng = random.Random(4)
    cancelled = 0
    with anyio.fail_after(20):
        async with (
            procpool.Process(workfns.ipc_put_range, (q, 0, 200, 0.0005)),
            procpool.Process(workfns.ipc_put_range, (q, 200, 400, 0.0005)),
        ):
            while len(received) < 400:
                with anyio.move_on_after(rng.choice([0, 0.0002, 0.001, 0.005])) as scope:
                    received.append(await q.get(timeout=5))  # queue.Empty if items were lost
                cancelled += scope.cancelled_caught
    assert sorted(received) == list(range(400))
    assert q.empty()
    assert cancelled > 0  # the test did cancel gets mid-wait


async def test_cancelled_get_takes_nothing_and_the_item_goes_to_the_next_getter() -> None:
    q: procpool.Queue[str] = procpool.Queue()
    got: list[str] = []
    waiter_scope = anyio.CancelScope()

    async def waiter() -> None:
        with waiter_scope:
            got.append(await q.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.05)  # it is now waiting on the socket
        waiter_scope.cancel()
    assert got == []
    async with procpool.Process(q.put, ("only item",)):
        pass
    with anyio.fail_after(5):
        assert await q.get() == "only item"
    assert q.empty()


async def test_bounded_queue_put_waits_and_a_cancelled_put_frees_its_slot() -> None:
    q: procpool.Queue[int] = procpool.Queue(maxsize=2)
    assert q.maxsize == 2
    await q.put(1)
    q.put_nowait(2)
    assert (q.qsize(), q.full(), q.empty()) == (2, True, False)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        await q.put(3, timeout=0.05)
    with anyio.move_on_after(0.05) as scope:
        await q.put(3)
    assert scope.cancelled_caught
    assert q.qsize() == 2  # the cancelled put took no slot and sent nothing
    report: procpool.Queue[tuple[str, object]] = procpool.Queue()
    async with procpool.Process(workfns.ipc_put_then_report, (q, 3, report)):
        await anyio.sleep(0.1)
        assert report.empty()  # the child waits for room
        assert await q.get() == 1
        assert await report.get() == ("put", 3)
    assert [q.get_nowait(), q.get_nowait()] == [2, 3]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        await q.get(timeout=0.05)


async def test_close_ends_iteration_and_refuses_puts_in_every_process() -> None:
    q: procpool.Queue[object] = procpool.Queue()
    report: procpool.Queue[tuple[str, object]] = procpool.Queue()
    async with (
        procpool.Process(workfns.ipc_get_then_report, (q, report)),
        procpool.Process(workfns.ipc_get_then_report, (q, report)),
    ):
        await q.put(None)  # None is an item like any other
        assert await report.get() == ("item", None)
        q.close()  # wakes the child still blocked in get()
        assert await report.get() == ("error", "QueueClosedError")
    with pytest.raises(procpool.QueueClosedError):
        await q.put(1)
    async with procpool.Process(workfns.ipc_put_then_report, (q, 1, report)):
        pass
    assert await report.get() == ("error", "QueueClosedError")
    assert [item async for item in q] == []
    with pytest.raises(procpool.QueueClosedError):
        q.get_nowait()


async def test_close_wakes_a_parent_waiting_to_put_on_a_full_queue() -> None:
    q: procpool.Queue[int] = procpool.Queue(maxsize=1)
    await q.put(0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_expect_closed_put, q)
            await anyio.sleep(0.05)
            q.close()
    assert [item async for item in q] == [0]  # what was in the queue still comes out


async def _expect_closed_put(q: procpool.Queue[int]) -> None:
    with pytest.raises(procpool.QueueClosedError):
        await q.put(1)


async def test_queue_travels_to_pool_tasks_and_other_queues() -> None:
    """Into a running pool worker (cloudpickle, the share point), inside another queue, and with
    a lambda as the item."""
    q: procpool.Queue[object] = procpool.Queue()
    carrier: procpool.Queue[procpool.Queue[object]] = procpool.Queue()
    async with procpool.Pool(2) as pool:
        await pool.run(workfns.ipc_put_range, q, 0, 3)
        await pool.run(lambda: q.put("from a lambda"))
        await carrier.put(q)
        inner = await carrier.get()
        await inner.put(lambda x: x + 1)
        received = [await q.get() for _ in range(4)]
    assert received[:3] == [0, 1, 2]
    assert received[3] == "from a lambda"
    assert (await q.get())(1) == 2


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_plain_multiprocessing_children_inherit_the_queue(start_method: str) -> None:
    """Plain pickle, while multiprocessing starts a child: the descriptors travel with the start."""
    q: procpool.Queue[int] = procpool.Queue()
    context = multiprocessing.get_context(start_method)
    children = [context.Process(target=workfns.ipc_put_range, args=(q, i * 10, i * 10 + 10)) for i in range(2)]
    for child in children:
        child.start()
    received = sorted(q.get(timeout=20) for _ in range(20))
    for child in children:
        child.join(20)
        child.close()
    assert received == list(range(20))


async def test_large_items_travel_outside_the_socket_buffer() -> None:
    q: procpool.Queue[bytes] = procpool.Queue()
    big = bytes(range(256)) * 40_000  # 10 MB
    async with procpool.Process(q.put, (big,)):
        with anyio.fail_after(10):
            assert await q.get() == big


async def test_the_loop_keeps_running_while_a_get_waits() -> None:
    q: procpool.Queue[int] = procpool.Queue()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        async with procpool.Process(workfns.ipc_put_range, (q, 7, 8, 0.0)):
            with anyio.fail_after(5):
                assert await q.get() == 7
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert ticks >= 5


def test_sync_face_outside_an_event_loop() -> None:
    q: procpool.Queue[int] = procpool.Queue(3)
    q.put(1)
    assert q.get() == 1
    q.put(2)
    assert q.get(block=False) == 2
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    copy = pickle.loads(cloudpickle.dumps(q))
    copy.put(5)
    assert q.get() == 5
    del copy


def test_bad_arguments_are_refused() -> None:
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="maxsize"):
            procpool.Queue(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too large"):
        procpool.Queue(2**40)
    q: procpool.Queue[object] = procpool.Queue()
    with pytest.raises(procpool.SerializationError):
        q.put_nowait(threading.Lock())
    with pytest.raises(ValueError, match="timeout"):
        q.get(timeout=-1)


_MANY = 50_000  # several times what a socket buffer holds
_FROM_CHILD = 20_000  # more than it holds too


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])  # put_nowait runs no loop code
async def test_unbounded_queue_takes_every_put_nowait_in_order() -> None:
    """put_nowait never raises queue.Full on an unbounded queue, and full() never says it is:
    what the socket cannot take waits in the putting process, which sends it all, in order,
    before the queue closes; a child that puts and returns at once does so before it exits."""
    q: procpool.Queue[int] = procpool.Queue()
    for i in range(_MANY):
        assert not q.full()
        q.put_nowait(i)
    assert q.qsize() >= _MANY
    q.close()  # the queue closes once what this process holds is sent
    with pytest.raises(procpool.QueueClosedError):
        q.put_nowait(0)
    with anyio.fail_after(30):
        async with procpool.Pool(1) as pool:
            assert await pool.run(workfns.ipc_drain_in_order, q) == (_MANY, _MANY)
            from_child: procpool.Queue[int] = procpool.Queue()
            done = procpool.Event()
            put_in_child = (from_child, _FROM_CHILD, done)
            async with procpool.Process(workfns.ipc_put_nowait_range_then_close, put_in_child) as child:
                await done.wait()  # nothing read yet: most of the items are still in the child
                assert await pool.run(workfns.ipc_drain_in_order, from_child) == (_FROM_CHILD, _FROM_CHILD)
            assert child.exitcode == 0


@pytest.mark.timeout(20)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # the feeder runs
def test_unbounded_queue_forked_while_its_feeder_holds_items() -> None:
    """A process forked while this one's feeder holds items (multiprocessing's fork context, a
    task's os.fork) does not inherit them: its own puts reach the queue, and this process's items
    all arrive once."""
    q: procpool.Queue[int] = procpool.Queue()
    for i in range(_FROM_CHILD):  # more than the socket takes: the feeder holds the rest
        q.put_nowait(i)
    child = multiprocessing.get_context("fork").Process(target=workfns.ipc_put_range, args=(q, -1, 0))
    child.start()
    try:
        received = []
        while len(received) < _FROM_CHILD + 1:
            received.append(q.get(timeout=5))  # queue.Empty if the child's item was lost
    finally:
        child.join(5)
        if child.exitcode is None:  # pragma: no cover (its feeder waits for room that never comes)
            child.kill()
            child.join()
    assert sorted(received) == list(range(-1, _FROM_CHILD))
    assert child.exitcode == 0


@pytest.mark.timeout(30)
async def test_a_retiring_worker_sends_what_its_feeder_holds_before_it_exits() -> None:
    """A worker that retires (max_tasks_per_worker) right after its task put more than the socket
    takes waits for its feeder: every item reaches the consumer here."""
    q: procpool.Queue[int] = procpool.Queue()
    received: list[int] = []

    async def consume() -> None:
        while len(received) < _FROM_CHILD:
            received.append(await q.get(timeout=5))  # queue.Empty if items were lost

    with anyio.fail_after(20):
        # A long grace: the flush may take a while on a loaded machine, and must not be cut short.
        async with procpool.Pool(1, max_tasks_per_worker=1, kill_grace=10) as pool:
            await pool.run(workfns.ipc_put_range, q, 0, _FROM_CHILD)  # returns before its items are all sent
            await consume()
    assert received == list(range(_FROM_CHILD))


@pytest.mark.timeout(30)
async def test_a_stopping_worker_reports_the_items_nobody_took_and_exits(caplog: pytest.LogCaptureFixture) -> None:
    """A worker stopped (the pool closes) while its feeder holds items that nobody reads drops
    them after a while, says so in a warning that reaches this process, and exits in time."""
    q: procpool.Queue[int] = procpool.Queue()
    with caplog.at_level(logging.WARNING, logger="procpool"), anyio.fail_after(20):
        async with procpool.Pool(1, kill_grace=1) as pool:
            pid = await pool.run(workfns.getpid)
            await pool.run(workfns.ipc_put_range, q, 0, _FROM_CHILD)
    arrived = q.qsize()  # exact here: nobody else puts or gets
    warnings = [r for r in caplog.records if r.name == "procpool" and "never sent" in r.getMessage()]
    assert len(warnings) == 1, caplog.records
    assert f"{_FROM_CHILD - arrived} items put by worker {pid} were never sent" in warnings[0].getMessage()
    assert 0 < arrived < _FROM_CHILD
