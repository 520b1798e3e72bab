"""A script that uses a pool, then forks (as a pre-forking server does once its app is loaded):
the forked process uses a pool of its own, and then the script uses one again.

Usage: python forked_after_pool.py  (with the tests directory on PYTHONPATH)
Prints one JSON object: for each of the three pools (``before``, ``forked``, ``after``), the
answer of its worker and the pid of the worker's parent (the forkserver that forked it); and
``forked_forkserver_ended``: whether the forked process's forkserver ended with it.
"""

import json
import os
import time

import anyio
import psutil

import procpool
from forking import in_forked_process


def square_and_parent(x: int) -> tuple[int, int]:
    return x * x, os.getppid()


async def one_pool() -> dict[str, int]:
    async with procpool.Pool(1) as pool:
        answer, forkserver = await pool.run(square_and_parent, 7)
    return {"answer": answer, "forkserver": forkserver}


def ended(pid: int) -> bool:
    """Whether process ``pid`` is gone or a zombie, within 10 seconds."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def main() -> None:
    report = {"before": anyio.run(one_pool)}
    report["forked"] = in_forked_process(lambda: anyio.run(one_pool))
    forked_forkserver = report["forked"]["forkserver"] if isinstance(report["forked"], dict) else None
    report["forked_forkserver_ended"] = forked_forkserver is not None and ended(forked_forkserver)
    report["after"] = anyio.run(one_pool)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
