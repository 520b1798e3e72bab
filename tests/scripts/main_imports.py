"""A script whose import leaves a file named by the importing process's pid in the directory
named by MAIN_IMPORTS_DIR: the script itself, and each process that imports it as the main module.

Usage: MAIN_IMPORTS_DIR=DIRECTORY python main_imports.py  (with the tests directory on PYTHONPATH)
Starts two pools of two workers one after the other, and prints one JSON object: the script's
pid, and the pids of the workers that answered.
"""

import json
import os
from pathlib import Path

import anyio

import procpool
import workfns

(Path(os.environ["MAIN_IMPORTS_DIR"]) / str(os.getpid())).touch()


async def workers_of_a_pool() -> list[int]:
    """The pids of a new pool's two workers, once each has answered."""
    pids: set[int] = set()
    async with procpool.Pool(2) as pool:
        while len(pids) < 2:
            async with anyio.create_task_group() as calls:
                for _ in range(2):  # each call keeps its worker busy, so the other takes the next
                    calls.start_soon(_add_pid, pool, pids)
    return sorted(pids)


async def _add_pid(pool: procpool.Pool, pids: set[int]) -> None:
    pids.add(await pool.run(workfns.sleep_then_getpid, 0.05))


async def main() -> None:
    first, second = await workers_of_a_pool(), await workers_of_a_pool()
    print(json.dumps({"script": os.getpid(), "workers": first + second}), flush=True)


if __name__ == "__main__":
    anyio.run(main)
