"""procpool.Pipe: connection ends awaited in the parent, blocking in children."""

from __future__ import annotations

import pickle

import anyio
import pytest

import procpool
import workfns
from ipc_support import no_thread_left  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.anyio


async def test_duplex_round_trips_with_two_children() -> None:
    ends = [procpool.Pipe() for _ in range(2)]
    with anyio.fail_after(20):
        async with (
            procpool.Process(workfns.ipc_echo, (ends[0][1],)),
            procpool.Process(workfns.ipc_echo, (ends[1][1],)),
        ):
            for _, theirs in ends:
                theirs.close()  # the child holds its own copy; ours would hide the end of file
            for i in range(20):
                for n, (mine, _) in enumerate(ends):
                    await mine.send((n, i))
                    assert await mine.recv() == ("echo", (n, i))
            big = b"x" * 3_000_000  # larger than a socket message: travels as a memory file
            await ends[0][0].send(big)
            assert await ends[0][0].recv() == ("echo", big)
            for mine, _ in ends:
                mine.close()  # end of file: the echo loops end, the children exit
    for mine, _ in ends:
        assert mine.closed


async def test_one_way_pipe_from_two_children_ends_iteration_at_end_of_file() -> None:
    reader, writer = procpool.Pipe(duplex=False)
    assert (reader.readable, reader.writable, writer.readable, writer.writable) == (True, False, False, True)
    with anyio.fail_after(20):
        async with (
            procpool.Process(workfns.ipc_send_range, (writer, 0, 50)),
            procpool.Process(workfns.ipc_send_range, (writer, 50, 100)),
        ):
            writer.close()
            received = [message async for message in reader]
    assert sorted(received) == list(range(100))
    assert await reader.poll()  # the end of file is "ready"
    with pytest.raises(EOFError):
        await reader.recv()
    reader.close()


async def test_cancelled_recv_takes_nothing() -> None:
    first, second = procpool.Pipe()
    with anyio.move_on_after(0.05) as scope:
        await first.recv()
    assert scope.cancelled_caught
    assert not await first.poll()
    await second.send("kept")
    assert await first.poll(1)
    assert await first.recv() == "kept"
    await second.send_bytes(b"raw")
    assert await first.recv_bytes() == b"raw"
    first.close()
    second.close()


async def test_closing_wakes_a_task_of_this_process_waiting_on_the_end() -> None:
    first, second = procpool.Pipe()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_expect_closed_recv, first)
            await anyio.sleep(0.05)
            first.close()
    second.close()


async def _expect_closed_recv(conn: procpool.Connection[object]) -> None:
    with pytest.raises(anyio.ClosedResourceError):
        await conn.recv()


async def test_a_connection_travels_to_a_pool_task() -> None:
    reader, writer = procpool.Pipe(duplex=False)
    async with procpool.Pool(1) as pool:
        await pool.run(workfns.ipc_send_range, writer, 0, 3)
    writer.close()
    with anyio.fail_after(5):
        assert [message async for message in reader] == [0, 1, 2]
    reader.close()


def test_sync_face_and_misuse() -> None:
    with procpool.Pipe(duplex=False)[0] as reader, pytest.raises(OSError, match="only receives"):
        reader.send(1)
    first, second = procpool.Pipe()
    with first, second:
        second.send({"a": 1})
        assert first.poll(1)
        assert first.recv() == {"a": 1}
        reader_copy = pickle.loads(pickle.dumps(first))
        second.send(2)
        assert reader_copy.recv() == 2
        reader_copy.close()
    assert first.closed
    with pytest.raises(OSError, match="closed"):
        first.recv()
    with pytest.raises(ValueError, match="closed"):
        pickle.dumps(first)
