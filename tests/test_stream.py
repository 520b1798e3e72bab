"""``Pool.stream``: a generator in a worker, its items as an async iterator in the parent.

What `InlinePool.stream` does the same is tested against both pools in test_stream_inline.py;
here is what only a worker process shows (its reuse, its kill, its crash).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import procpool
import workfns

pytestmark = pytest.mark.anyio


def _log_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_leaving_early_closes_the_generator_and_frees_the_worker(tmp_path: Path) -> None:
    log = tmp_path / "produced"
    async with procpool.Pool(1) as pool:
        pid = await pool.run(workfns.getpid)
        async with pool.stream(workfns.count_up, 10**6, str(log)) as items:
            async for i in items:
                if i == 3:
                    break
        assert _log_lines(log)[-1] == "closed"
        assert len(_log_lines(log)) < 100
        assert await pool.run(workfns.getpid) == pid


async def test_cancelling_the_consumer_stops_the_stream(tmp_path: Path) -> None:
    log = tmp_path / "log"
    async with procpool.Pool(1, kill_grace=0.2) as pool:
        with anyio.move_on_after(0.5):
            async for item in pool.stream(workfns.yield_then_sleep, 30, str(log)):
                pid = item
        assert isinstance(pid, int)
        # The generator was stuck in sleep(30): its worker was killed and replaced.
        assert await pool.run(workfns.getpid) != pid


async def test_worker_crash_mid_stream() -> None:
    async with procpool.Pool(1) as pool:
        received = []
        with pytest.raises(procpool.WorkerCrashedError):
            async for item in pool.stream(workfns.yield_then_die):
                received.append(item)
        assert received == [1]
        assert await pool.run(workfns.square, 2) == 4


async def test_stream_alongside_other_tasks() -> None:
    async with procpool.Pool(2) as pool:
        async with pool.stream(workfns.count_up, 50) as items:
            total = 0
            async for i in items:
                total += i
                if i == 10:
                    assert await pool.run(workfns.square, 5) == 25
        assert total == sum(range(50))
