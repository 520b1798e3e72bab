"""``pool.map`` and ``pool.executor.map`` choose their chunk size when the caller leaves it out:
few tasks for many tiny items, one item per task for slow ones, and ``chunksize=`` still wins."""

from __future__ import annotations

import math
from typing import Any

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


@pytest.mark.parametrize(
    ("seconds", "fewest_ahead", "most_ahead"),
    [(0.05, 1, 2 * 2), (0, 2 * 2 + 1, 8 * 2)],
    ids=["slow chunks: twice the workers", "short chunks: up to eight times"],
)
async def test_the_chunks_in_flight_by_default_follow_how_long_a_chunk_takes(
    seconds: float, fewest_ahead: int, most_ahead: int
) -> None:
    """With ``max_in_flight`` left out, a map keeps twice the workers' number of chunks in flight,
    and more (never over eight times) while chunks are short, pulling its input no further ahead
    of a slow consumer than that."""
    pulled = consumed = most_seen = 0

    def endless() -> Any:
        nonlocal pulled
        while True:
            pulled += 1
            yield seconds

    async with procpool.Pool(2) as pool, pool.map(workfns.sleep_and_return, endless(), chunksize=1) as results:
        with anyio.fail_after(30):
            async for _ in results:
                consumed += 1
                await anyio.sleep(0.005 + seconds)  # a consumer slower than the workers
                most_seen = max(most_seen, pulled - consumed)
                if consumed == 60:
                    break
    assert fewest_ahead <= most_seen <= most_ahead


async def test_a_chunked_map_cancelled_midway_leaves_no_task() -> None:
    async with procpool.Pool(2) as pool:
        # Eight chunks in flight on two workers: however results and refills interleave, some
        # still wait for a worker when the consumer stops (the map's own number may be four).
        async with pool.map(workfns.sleep_and_return, [0.01] * 2_000, max_in_flight=8) as results:
            seen = 0
            async for _ in results:
                seen += 1
                if seen == 300:
                    break
        stats = pool.stats()
        assert stats.queued == 0  # every chunk still in flight was cancelled
        assert stats.cancelled > 0
        # None runs on. A worker that began a chunk in the instant before the skip reached it is
        # killed there (docs/cancellation.md): it counts as running until it is gone.
        with anyio.fail_after(5):
            while pool.stats().running:
                await anyio.sleep(0.01)


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


@pytest.mark.parametrize(
    "items",
    [list(range(25)), tuple(range(25)), range(3, 200, 7), range(20, 0, -3), range(0), [(1, 2)] * 5],
    ids=["list", "tuple", "range", "reversed-range", "empty-range", "tuples"],
)
async def test_a_sequence_is_mapped_in_order_whatever_its_kind(items: Any) -> None:
    """A list, tuple or range is sliced into chunks rather than iterated (a range's chunks are
    ranges): each item still reaches the function as itself, once, in order."""
    async with procpool.Pool(2) as pool:
        assert await pool.map(workfns.identity, items, chunksize=4) == list(items)
        assert [y async for y in pool.map(workfns.square, range(10), chunksize=3)] == [i * i for i in range(10)]


async def test_anext_and_async_for_take_turns_over_one_sequence_of_results() -> None:
    """``anext()`` and ``async for`` (which runs a generator of its own on asyncio) share one
    position: mixed, they take each result once, in order, across chunk boundaries."""
    async with procpool.Pool(2) as pool:
        results = pool.map(workfns.identity, range(40), chunksize=3)
        seen = [await anext(results)]
        async for y in results:
            seen.append(y)
            if y % 5 == 0:
                seen.append(await anext(results))
            if len(seen) >= 20:
                break
        seen += [y async for y in results]  # a second async for goes on where the first stopped
    assert seen == list(range(40))


async def test_a_closed_map_yields_nothing_more() -> None:
    async with procpool.Pool(2) as pool:
        results = pool.map(workfns.identity, range(100), chunksize=10)
        iterator = aiter(results)
        assert [await anext(iterator) for _ in range(3)] == [0, 1, 2]
        await results.aclose()
        assert [y async for y in iterator] == []  # not the rest of the chunk it was in
        assert [y async for y in results] == []
        with pytest.raises(StopAsyncIteration):
            await anext(results)
