"""Start two procpool.Process children and a procpool.Manager, print their pids, wait to be killed.

Usage: python ipc_owner.py START_METHOD  (with the tests directory on PYTHONPATH)

The test SIGKILLs this process and checks that none of the processes it started outlives it.
"""

from __future__ import annotations

import os
import sys
import time

import anyio

import procpool


def sleep_forever(report: procpool.Queue[int]) -> None:
    report.put(os.getpid())
    time.sleep(600)


async def main(start_method: str) -> None:
    report: procpool.Queue[int] = procpool.Queue()
    async with procpool.Manager(start_method=start_method):
        children = [procpool.Process(sleep_forever, (report,), start_method=start_method) for _ in range(2)]
        for child in children:
            await child.start()
        pids = [await report.get() for _ in children]
        print("children", *pids, flush=True)
        await anyio.sleep(600)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
