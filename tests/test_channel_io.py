"""How the pool watches its workers' channels on asyncio and uvloop (`_engine._channel_io`):
a channel whose frames outlast a loop turn's budget is called at most twice a turn (its readiness, and
the call due again), however many turns they last."""

from __future__ import annotations

import asyncio
import functools
import socket

import anyio
import pytest

from procpool._engine._channel_io import channel_io

pytestmark = pytest.mark.anyio

TURNS = 50


@pytest.fixture(
    params=[pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


async def test_a_channel_left_readable_is_called_at_most_twice_a_turn_however_long_its_frames_last() -> None:
    """Frames left for the next turn (the budget spent) bring one call there, whether the loop
    reports the channel readable or not: the calls of a busy channel do not pile up, turn by turn
    (they did: each readiness call left one more call due again, for good)."""
    ends = [socket.socketpair() for _ in range(2)]
    calls = {reader.fileno(): 0 for reader, _ in ends}
    turn = 0
    calls_by_turn: dict[tuple[int, int], int] = {}

    def on_readable(fd: int) -> bool:
        calls[fd] += 1
        calls_by_turn[fd, turn] = calls_by_turn.get((fd, turn), 0) + 1
        if io.frames_this_turn():
            io.settled(1)  # one frame a turn: the budget
        return True  # frames are always left

    async with anyio.create_task_group() as task_group:
        io = channel_io(task_group, 1)
        for reader, writer in ends:
            writer.send(b"x")  # readable from now on: the loop reports it every turn too
            io.watch(reader.fileno(), functools.partial(on_readable, reader.fileno()))
        for turn in range(TURNS):  # noqa: B007 - read by on_readable
            await asyncio.sleep(0)
        for reader, _ in ends:
            io.unwatch(reader.fileno())
    for reader, writer in ends:
        reader.close()
        writer.close()
    assert all(count >= TURNS // 2 for count in calls.values()), calls  # each channel goes on being served
    assert max(calls_by_turn.values()) <= 2, calls_by_turn  # its readiness, and the call due again
