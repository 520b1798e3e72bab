"""Start a pool with busy workers, print their pids, then wait to be killed.

Usage: python busy_pool.py START_METHOD DIRECTORY  (with the tests directory on PYTHONPATH)

One worker sleeps, one runs a busy loop in C that holds the GIL, and three sleep after ignoring
SIGIO (one of them with a forked child), blocking it or handling it. The test SIGKILLs this
process and checks that no process it started outlives it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

import hostile_fns
import procpool
import workfns

SIGIO_TASKS = ("ignore", "block", "handle")


async def main(start_method: str, directory: Path) -> None:
    async with procpool.Pool(2 + len(SIGIO_TASKS), start_method=start_method) as pool:
        pool.submit(workfns.touch_after, str(directory / "sleeper"), 60)
        pool.submit(workfns.touch_then_spin, str(directory / "spinner"), 10**11)
        for how in SIGIO_TASKS:
            pool.submit(hostile_fns.deflect_sigio_then_sleep, str(directory / how), how, 60)
        pids = [(await hostile_fns.read_pids(directory / name, 1))[0] for name in ("sleeper", "spinner")]
        for how in SIGIO_TASKS:
            pids += await hostile_fns.read_pids(directory / how, 2 if how == "ignore" else 1)
        print("pids", *pids, flush=True)
        await anyio.sleep(60)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], Path(sys.argv[2]))
