"""``pool.map`` and ``pool.executor.map`` choose their chunk size when the caller leaves it out:
few tasks for many tiny items, one item per task for slow ones, and ``chunksize=`` still wins."""

from __future__ import annotations

import math

import anyio
import pytest

import procpool
import workfns

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def _tasks_completed(pool: procpool.Pool) -> int:
    return pool.stats().completed


@pytest.mark.parametrize("ordered", [True, False])
async def test_many_tiny_items_travel_in_far_fewer_tasks_than_items(ordered: bool) -> None:
    items = 20_000
    async with procpool.Pool(2) as pool:
        before = _tasks_completed(pool)
        results = await pool.map(workfns.square, range(items), ordered=ordered)
        tasks = _tasks_completed(pool) - before
    assert (results if ordered else sorted(results)) == [i * i for i in range(items)]
    assert tasks < 200, f"{tasks} tasks for {items} tiny items"


async def test_slow_items_go_one_per_task_to_every_worker() -> None:
    async with procpool.Pool(2) as pool:
        before = _tasks_completed(pool)
        with anyio.fail_after(20):
            pids = [pid async for pid in pool.map(workfns.sleep_then_getpid, [0.3] * 6)]
        tasks = _tasks_completed(pool) - before
    assert len(set(pids)) == 2  # no chunk took the slow items hostage on one worker
    assert tasks == 6


async def test_an_explicit_chunksize_fixes_the_size() -> None:
    async with procpool.Pool(2) as pool:
        before = _tasks_completed(pool)
        results = await pool.map(workfns.square, range(100), chunksize=10)
        tasks = _tasks_completed(pool) - before
    assert results == [i * i for i in range(100)]
    assert tasks == 10


async def test_a_chunked_map_cancelled_midway_leaves_no_task() -> None:
    async with procpool.Pool(2) as pool:
        async with pool.map(workfns.sleep_and_return, [0.01] * 2_000) as results:
            seen = 0
            async for _ in results:
                seen += 1
                if seen == 300:  # by now chunks hold many items each
                    break
        stats = pool.stats()
        assert (stats.queued, stats.running) == (0, 0)


@pytest.mark.parametrize(("items", "chunksize"), [(100, None), (100, 7), (0, None), (3, None)])
async def test_the_executor_map_takes_about_four_chunks_per_worker(items: int, chunksize: int | None) -> None:
    async with procpool.Pool(2) as pool:
        before = _tasks_completed(pool)

        def run_map() -> list[int]:
            return list(pool.executor.map(workfns.square, range(items), chunksize=chunksize))

        results = await anyio.to_thread.run_sync(run_map)
        tasks = _tasks_completed(pool) - before
    assert results == [i * i for i in range(items)]
    size = chunksize or max(1, math.ceil(items / (4 * 2)))
    assert tasks == math.ceil(items / size)
