"""A script whose import takes a second (the forkserver imports it before it forks a worker), that
forks while one of its threads starts a pool's worker, waiting for the forkserver's answer; the
forked process then uses a pool of its own.

Usage: python forked_while_starting.py  (with the tests directory on PYTHONPATH)
Prints one JSON object: ``forked`` (the forked process's answer, or what it raised) and
``parent`` (the parent's).
"""

import json
import threading
import time

import anyio

import procpool
import workfns
from forking import in_forked_process

time.sleep(1.0)  # stands for heavy imports: the worker's start waits for the forkserver this long


async def one_pool() -> object:
    async with procpool.Pool(1) as pool:
        return await pool.run(workfns.square, 7)


def main() -> None:
    parent: list[object] = []
    starting = threading.Thread(target=lambda: parent.append(anyio.run(one_pool)))
    starting.start()  # its pool's start waits for the forkserver, which imports this script
    time.sleep(0.4)
    report = {"forked": in_forked_process(lambda: anyio.run(one_pool))}
    starting.join()
    report["parent"] = parent[0] if parent else None
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
