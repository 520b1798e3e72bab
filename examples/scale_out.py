"""Scale out: one script, run on this machine's cores or on a Dask cluster by changing one argument.

    python examples/scale_out.py                         # procpool.Pool: worker processes here
    python examples/scale_out.py --dask                  # procpool.DaskPool on a LocalCluster it starts
    python examples/scale_out.py --dask tcp://host:8786  # procpool.DaskPool on a running cluster

The work counts the primes below a limit by trial division (pure Python, CPU-bound), one block of
numbers per task, and checks the total against a sieve computed here. Only `make_pool` knows which
backend runs the tasks: the code that uses the pool is the same for both. The Dask workers need
procpool installed; the functions of this script travel by value, so they do not need the script.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Sequence

import procpool


def count_primes(start: int, stop: int) -> int:
    """How many primes ``start <= n < stop`` has, by trial division: slow on purpose."""
    count = 0
    for n in range(max(start, 2), stop):
        if all(n % d for d in range(2, math.isqrt(n) + 1)):
            count += 1
    return count


def primes_below(limit: int) -> int:
    """The reference answer (for ``limit >= 2``), from a sieve: fast, and a different algorithm."""
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"  # 0 and 1
    for n in range(2, math.isqrt(limit - 1) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve)


def make_pool(dask: str | None) -> procpool.Pool | procpool.DaskPool:
    """The one place that knows the backend: None for local processes; '' or an address for Dask."""
    if dask is None:
        return procpool.Pool()
    return procpool.DaskPool(dask or None)  # None: a LocalCluster for the pool's lifetime


async def count_in_blocks(pool: procpool.Pool | procpool.DaskPool, limit: int, block: int) -> int:
    starts = range(0, limit, block)
    stops = [min(start + block, limit) for start in starts]
    total = 0
    async for count in pool.map(count_primes, starts, stops, ordered=False):  # as blocks complete
        total += count
    return total


async def main(dask: str | None, limit: int, block: int) -> bool:
    async with make_pool(dask) as pool:
        print(f"running on {pool!r}")
        started = time.perf_counter()
        first = await pool.run(count_primes, 0, 100)  # one call
        total = await count_in_blocks(pool, limit, block)  # many calls, with backpressure
        elapsed = time.perf_counter() - started
    print(f"{total} primes below {limit:,} in {limit // block} blocks, {elapsed:.2f} s")
    correct = first == 25 and total == primes_below(limit)
    print("all results correct" if correct else "WRONG RESULTS")
    return correct


def cli(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run; the exit status is 0 when every result was correct."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--dask",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on Dask: on a LocalCluster started for the run, or on the scheduler at ADDRESS",
    )
    parser.add_argument("--quick", action="store_true", help="a small limit that runs in about a second (for tests)")
    args = parser.parse_args(argv)
    limit, block = (100_000, 10_000) if args.quick else (2_000_000, 50_000)
    # DaskPool needs asyncio (or uvloop); procpool.Pool alone would run under trio as well.
    return 0 if asyncio.run(main(args.dask, limit, block)) else 1


if __name__ == "__main__":  # required: worker processes re-import this module
    raise SystemExit(cli())
