"""How the pool watches its workers' channels (`_engine._channel_io`):
a channel whose frames outlast a loop turn's budget is called at most once a turn, however many
turns they last, and never to find the turn's budget spent; busy channels take turns."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket

import anyio
import anyio.lowlevel
import pytest

from procpool._engine._channel_io import channel_io

pytestmark = pytest.mark.anyio

TURNS = 50


ASYNCIO_LOOPS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
]


@pytest.fixture(params=[*ASYNCIO_LOOPS, pytest.param(("trio", {}), id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


async def test_a_channel_left_readable_is_called_once_a_turn_and_only_with_budget_left() -> None:
    """Frames left for the next turn (the budget spent) bring one call there, whether the loop
    reports the channel readable or not: the calls of a busy channel do not pile up, turn by turn
    (they did: each readiness call left one more call due again, for good), no call is made only
    to find the budget spent (most calls were, with several busy channels), and two channels
    that share a budget of one frame a turn are served in turn."""
    ends = [socket.socketpair() for _ in range(2)]
    calls = {reader.fileno(): 0 for reader, _ in ends}
    turn = 0
    calls_by_turn: dict[tuple[int, int], int] = {}
    calls_without_budget = 0

    def on_readable(fd: int) -> bool:
        nonlocal calls_without_budget
        calls[fd] += 1
        calls_by_turn[fd, turn] = calls_by_turn.get((fd, turn), 0) + 1
        if io.frames_this_turn():
            io.settled(1)  # one frame a turn: the budget
        else:
            calls_without_budget += 1
        return True  # frames are always left

    async with anyio.create_task_group() as task_group:
        io = channel_io(task_group, 1)
        for reader, writer in ends:
            writer.send(b"x")  # readable from now on: the loop reports it every turn too
            io.watch(reader.fileno(), functools.partial(on_readable, reader.fileno()))
        for turn in range(TURNS):  # noqa: B007 - read by on_readable
            await anyio.lowlevel.checkpoint()  # a loop turn: trio's next batch of runnable tasks
        for reader, _ in ends:
            io.unwatch(reader.fileno())
    io.close()
    for reader, writer in ends:
        reader.close()
        writer.close()
    assert all(count >= TURNS // 2 - 2 for count in calls.values()), calls  # every other turn each
    assert max(calls_by_turn.values()) == 1, calls_by_turn
    assert calls_without_budget == 0


@pytest.mark.parametrize("anyio_backend", ASYNCIO_LOOPS)  # on trio, a step that raises fails the task group
async def test_a_channel_whose_step_raises_leaves_the_others_waiting_for_the_budget_served() -> None:
    """Channels whose frames were all read wait for the budget's renewal, and only that calls
    them: when one of them raises there, the others are still called on the next turns, with no
    new readiness to wake them."""
    loop = asyncio.get_running_loop()
    raised: list[BaseException | None] = []
    loop.set_exception_handler(lambda _loop, context: raised.append(context.get("exception")))
    ends = [socket.socketpair() for _ in range(2)]
    failing, served = (reader.fileno() for reader, _ in ends)
    calls = {failing: 0, served: 0}

    def on_readable(reader: socket.socket) -> bool:
        fd = reader.fileno()
        calls[fd] += 1
        with contextlib.suppress(BlockingIOError):
            reader.recv(16, socket.MSG_DONTWAIT)  # what came is read at once: frames left in memory
        if fd == failing and calls[fd] == 3:
            raise RuntimeError("a broken log handler")  # before it settles anything this turn
        if io.frames_this_turn():
            io.settled(1)
        return True  # frames are always left

    try:
        async with anyio.create_task_group() as task_group:
            io = channel_io(task_group, 1)
            for reader, writer in ends:
                writer.send(b"x")
                io.watch(reader.fileno(), functools.partial(on_readable, reader))
            for _ in range(TURNS):
                await asyncio.sleep(0)
            served_before = calls[served]
            for _ in range(TURNS):
                await asyncio.sleep(0)
            for reader, _ in ends:
                io.unwatch(reader.fileno())
        io.close()
    finally:
        loop.set_exception_handler(None)
        for reader, writer in ends:
            reader.close()
            writer.close()
    assert len(raised) == 1
    assert isinstance(raised[0], RuntimeError)
    assert calls[served] >= served_before + TURNS // 2, calls


async def test_closing_with_a_channel_still_watched_stops_every_call() -> None:
    """The pool closes its channels' watching once its last worker has stopped, which may leave
    a channel watched (a worker whose loop was closed under it): nothing is called after, though
    the channel becomes readable, and the watching's own descriptor is closed (the suite checks)."""
    reader, writer = socket.socketpair()
    calls = 0

    def on_readable() -> bool:
        nonlocal calls
        calls += 1
        return False

    async with anyio.create_task_group() as task_group:
        io = channel_io(task_group, 8)
        io.watch(reader.fileno(), on_readable)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()  # trio's task starts and waits
        io.close()
        writer.send(b"x")
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
    reader.close()
    writer.close()
    assert calls == 0
