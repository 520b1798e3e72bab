"""Start a pool with two busy workers, print their pids, then wait to be killed.

Usage: python busy_pool.py START_METHOD DIRECTORY  (with the tests directory on PYTHONPATH)

One worker sleeps, the other runs a busy loop in C that holds the GIL. The test SIGKILLs this
process and checks that no process it started outlives it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

import procpool
import workfns


async def wait_for_pid(path: Path) -> int:
    while True:
        try:
            return int(path.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            await anyio.sleep(0.01)


async def main(start_method: str, directory: Path) -> None:
    async with procpool.Pool(2, start_method=start_method) as pool:
        pool.submit(workfns.touch_after, str(directory / "sleeper"), 60)
        pool.submit(workfns.touch_then_spin, str(directory / "spinner"), 10**11)
        pids = [await wait_for_pid(directory / name) for name in ("sleeper", "spinner")]
        print("workers", *pids, flush=True)
        await anyio.sleep(60)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], Path(sys.argv[2]))
