"""Open a pool without ``async with``, keep a worker busy, then drop the pool without closing it.

Usage: python abandoned_pool.py MODE BACKEND DIRECTORY  (with the tests directory on PYTHONPATH)

MODE ``closed``: the event loop is closed (never shut down) before the pool is dropped. MODE
``running``: the pool is dropped while its event loop runs on. BACKEND: asyncio or uvloop.

Prints ``pids`` and the two workers' pids once the long task has started, drops the pool, then
prints ``dropped`` with the number of the pool's descriptors still open (``closed`` mode only;
sockets, pidfds, epoll sets and shared memory: the loop's own are closed with it), and waits for its
standard input to close before it exits, so the test sees what the drop did, not what the exit does.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from pathlib import Path

import procpool
import workfns


def pool_descriptors() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        count += target.startswith(("socket:", "anon_inode:[pidfd]", "anon_inode:[eventpoll]", "/memfd:procpool"))
    return count


async def start(pool: procpool.Pool, directory: Path) -> list[int]:
    await pool.__aenter__()
    spinner = directory / "spinner"
    pool.submit(workfns.touch_then_spin, str(spinner), 10**12)  # hours of work
    while not spinner.exists() or not spinner.read_text():
        await asyncio.sleep(0.01)
    return [int(spinner.read_text()), await pool.run(os.getpid)]


def closed(backend: str, directory: Path) -> None:
    if backend == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    pool = procpool.Pool(2)
    pids = loop.run_until_complete(start(pool, directory))
    loop.close()
    print("pids", *pids, flush=True)
    del pool
    gc.collect()
    print("dropped", pool_descriptors(), flush=True)
    sys.stdin.read()


async def running(directory: Path) -> None:
    pool = procpool.Pool(2)
    pids = await start(pool, directory)
    print("pids", *pids, flush=True)
    del pool
    gc.collect()
    print("dropped", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    mode, backend, directory = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if mode == "closed":
        closed(backend, directory)
    elif backend == "uvloop":
        import uvloop

        uvloop.run(running(directory))
    else:
        asyncio.run(running(directory))
