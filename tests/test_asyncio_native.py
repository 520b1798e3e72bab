"""asyncio-native cancellation (``asyncio.timeout``, ``wait_for``, ``Task.cancel``) and gather."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import lifecycle_fns
import procpool
import workfns


@pytest.mark.asyncio
async def test_asyncio_timeout_and_wait_for_cancel_the_call() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await pool.run(workfns.sleep_and_return, 30)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(workfns.sleep_and_return, 30), 0.2)
        assert await pool.run(workfns.square, 4) == 16


@pytest.mark.asyncio
async def test_cancelling_an_asyncio_task_cancels_the_call() -> None:
    async with procpool.Pool(1) as pool:
        pid = await pool.run(workfns.getpid)
        waiter = asyncio.ensure_future(pool.run(workfns.sleep_and_return, 30))
        await asyncio.sleep(0.2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await pool.run(workfns.getpid) != pid  # the worker was killed and replaced


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_call_made_after_its_task_cancelled_itself_never_begins(tmp_path: Path) -> None:
    """``task.cancel()`` on the running task raises only at its next wait; the call must not
    have gone to a worker by then (it did in some tries: anyio's scopes never record it)."""
    events: list[object] = []
    async with procpool.Pool(2, on_event=events.append) as pool:
        assert await pool.run(workfns.square, 2) == 4

        async def call_after_cancelling_itself(marker: Path) -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await pool.run(lifecycle_fns.touch, str(marker))

        for i in range(40):
            with pytest.raises(asyncio.CancelledError):
                await asyncio.ensure_future(call_after_cancelling_itself(tmp_path / f"ran-{i}"))
        assert await pool.run(workfns.square, 3) == 9
    # A call that had begun would have been killed with its worker (kill_on_cancel).
    assert [e for e in events if isinstance(e, procpool.WorkerExited) and e.reason != "closed"] == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.asyncio
async def test_gather_mixes_io_and_cpu() -> None:
    async def io(value: int) -> int:
        await asyncio.sleep(0.01)
        return value

    async with procpool.Pool(2) as pool:
        results = await asyncio.gather(io(1), pool.run(workfns.square, 3), io(2), pool.submit(workfns.square, 4))
    assert results == [1, 9, 2, 16]
