"""A program that starts a pool and exits without closing it: it must still exit at once,
leaving no worker behind. Prints the workers' pids."""

from __future__ import annotations

import asyncio
import os

import procpool


async def worker_pids(pool: procpool.Pool) -> set[int]:
    return {await pool.run(os.getpid) for _ in range(8)}


if __name__ == "__main__":
    loop = asyncio.new_event_loop()
    pool = procpool.Pool(2)
    loop.run_until_complete(pool.__aenter__())
    print(" ".join(map(str, sorted(loop.run_until_complete(worker_pids(pool))))), flush=True)
    # Neither the pool nor the loop is closed: interpreter exit must deal with the workers.
