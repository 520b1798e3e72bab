"""H. Map over many tiny items: procpool's ``pool.map`` against the synchronous map APIs of its peers.

In H every map gets the same ``chunksize``; in H-default none gets one (``chunksize=None``: the
argument is left out, or for procpool given its default, None), so each library chooses. Each map
runs once on a small input to warm its workers up (untimed), then over ``items`` integers; results
are consumed in order as they arrive and checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import workload

WARMUP_ITEMS = 10_000


def _check(total: int, items: int) -> None:
    expected = items * (items + 1) // 2  # sum of increment(x) for x in range(items)
    if total != expected:
        raise AssertionError(f"map results sum to {total}, expected {expected}")


def _chunking(chunksize: int | None, name: str = "chunksize") -> dict[str, int]:
    """The keyword argument that sets a map's chunk size; none at all for None (the library's default)."""
    return {} if chunksize is None else {name: chunksize}


def _timed(run: Callable[[int], Iterable[int]], items: int) -> dict[str, Any]:
    _check(sum(run(min(WARMUP_ITEMS, items))), min(WARMUP_ITEMS, items))
    start = time.perf_counter()
    total = sum(run(items))
    seconds = time.perf_counter() - start
    _check(total, items)
    return {"items_per_s": items / seconds, "seconds": seconds}


def multiprocessing_imap(workers: int, items: int, chunksize: int | None) -> dict[str, Any]:
    """``multiprocessing.Pool.imap`` (default start method)."""
    import multiprocessing

    with multiprocessing.Pool(workers) as pool:
        return _timed(lambda n: pool.imap(workload.increment, range(n), **_chunking(chunksize)), items)


def executor_map(workers: int, items: int, chunksize: int | None) -> dict[str, Any]:
    """``concurrent.futures.ProcessPoolExecutor.map`` (default start method)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as executor:
        return _timed(lambda n: executor.map(workload.increment, range(n), **_chunking(chunksize)), items)


def mpire_imap(workers: int, items: int, chunksize: int | None) -> dict[str, Any]:
    """mpire's ``WorkerPool.imap``, workers kept alive between the warm-up and the timed map."""
    from mpire.pool import WorkerPool

    with WorkerPool(n_jobs=workers, keep_alive=True) as pool:
        return _timed(lambda n: pool.imap(workload.increment, range(n), **_chunking(chunksize, "chunk_size")), items)


def procpool_map(workers: int, items: int, chunksize: int | None) -> dict[str, Any]:
    """``async for y in pool.map(increment, range(items), chunksize=...)`` on asyncio."""
    import anyio

    import procpool

    async def main() -> dict[str, Any]:
        async with procpool.Pool(workers) as pool:

            async def consume(n: int) -> int:
                total = 0
                # None is the default, as if left out: the pool chooses the chunk sizes
                async for y in pool.map(workload.increment, range(n), chunksize=chunksize):
                    total += y
                return total

            _check(await consume(min(WARMUP_ITEMS, items)), min(WARMUP_ITEMS, items))
            start = time.perf_counter()
            total = await consume(items)
            seconds = time.perf_counter() - start
            _check(total, items)
            return {"items_per_s": items / seconds, "seconds": seconds}

    result: dict[str, Any] = anyio.run(main)
    return result
