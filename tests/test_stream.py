"""``Pool.stream``: a generator in a worker, its items as an async iterator in the parent."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import procpool
import workfns

pytestmark = pytest.mark.anyio


def _log_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_items_arrive_in_order_from_sync_and_async_generators() -> None:
    async with procpool.Pool(2) as pool:
        assert [i async for i in pool.stream(workfns.count_up, 20)] == list(range(20))
        assert [i async for i in pool.stream(workfns.async_count_up, 5)] == list(range(5))
        assert await pool.stream(workfns.numbers_list, 3) == [0, 1, 2]
        assert await pool.stream(lambda: (x * 2 for x in range(3))) == [0, 2, 4]


async def test_the_worker_waits_for_a_slow_consumer(tmp_path: Path) -> None:
    log = tmp_path / "produced"
    async with procpool.Pool(1) as pool, pool.stream(workfns.count_up, 1000, str(log)) as items:
        assert await items.__anext__() == 0
        # Give the worker every chance to run ahead, then check it stopped at its credit.
        previous = -1
        while len(_log_lines(log)) != previous:
            previous = len(_log_lines(log))
            await anyio.sleep(0.2)
        assert 1 < len(_log_lines(log)) <= 1 + 8 + 1
        assert [await items.__anext__() for _ in range(30)] == list(range(1, 31))


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


async def test_generator_error_arrives_after_its_items() -> None:
    async with procpool.Pool(1) as pool:
        received = []
        with pytest.raises(ValueError, match="failed after 2"):
            async for item in pool.stream(workfns.fail_after_items, 2):
                received.append(item)
        assert received == [0, 1]
        with pytest.raises(procpool.SerializationError, match="an item of"):
            await pool.stream(workfns.yield_lock)
        with pytest.raises(TypeError, match="not iterable"):
            await pool.stream(workfns.square, 3)
        assert await pool.run(workfns.square, 3) == 9


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
