"""A streamed computation: a generator runs in a worker, and its items reach the parent as they
are made, with the worker never more than a few items ahead of the consumer.

The worker scans ranges of numbers for primes and yields one batch per range. The parent prints
a running count while its event loop stays free (a heartbeat ticks meanwhile), and stops as soon
as it has enough: the generator is closed in the worker (its ``finally`` runs) and the worker is
free for the next task.

Run it with ``python examples/streamed.py [--limit N]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import anyio

import procpool


def primes_in_batches(start: int, batch: int) -> Iterator[list[int]]:
    """Yield the primes of [start, start + batch), then of the next range, and so on, forever."""
    low = start
    try:
        while True:
            yield [n for n in range(max(low, 2), low + batch) if all(n % d for d in range(2, int(n**0.5) + 1))]
            low += batch
    finally:
        print("worker: generator closed after scanning up to", low + batch, flush=True)


async def heartbeat(ticks: list[float]) -> None:
    while True:
        await anyio.sleep(0.01)
        ticks.append(anyio.current_time())


async def main(limit: int) -> list[int]:
    found: list[int] = []
    ticks: list[float] = []
    async with procpool.Pool(1) as pool, anyio.create_task_group() as tg:
        tg.start_soon(heartbeat, ticks)
        async with pool.stream(primes_in_batches, 0, 20_000) as batches:
            async for batch in batches:
                found += batch
                print(f"{len(found):>6} primes so far (largest {found[-1]})")
                if len(found) >= limit:
                    break  # closes the generator in the worker
        tg.cancel_scope.cancel()
        print(f"the event loop ticked {len(ticks)} times meanwhile")
    return found[:limit]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=20_000, help="how many primes to find")
    primes = anyio.run(main, parser.parse_args().limit)
    print("the first primes:", primes[:10], "... the last:", primes[-1])
