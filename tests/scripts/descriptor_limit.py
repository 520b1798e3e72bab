"""Run a pool into this process's descriptor limit eight times, and say what happened each time.

Usage: python descriptor_limit.py BACKEND  (with the tests directory on PYTHONPATH)

The limit (RLIMIT_NOFILE) is lowered to 64. Each cycle opens a pool and takes every descriptor
left. Its worker exits, and its replacement cannot start; nor can the worker that the next task
asks for. Then it takes every descriptor but a few (see `LEAVE`), asks for another task, which
needs a worker, makes one of each IPC object, and shares a Pipe end (as pickling it for a running
process does). Then it gives the descriptors back, runs a task and closes the pool, and opens
another pool with as few descriptors left, which fails unless there are enough. Prints one
JSON line per cycle: the outcomes, and how many descriptors this process has open once the pool
is closed.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio

import procpool
import workfns

LIMIT = 64
# Descriptors left free in each cycle's second round: every step of a worker's start (the two
# socket pairs, the memory file, its mapping, the descriptors multiprocessing needs), of a
# Condition's (its pipes) and of a Barrier's (its memory file, and its mapping) fails in one.
LEAVE = [0, 2, 4, 5, 6, 8, 9, 13]
# Every error seen: a construction that leaves what it made to the garbage collector shows as a
# leak, as the failed step's frames, which hold what it made, live on in the error's traceback.
errors: list[BaseException] = []

IPC_OBJECTS: dict[str, Callable[[], Any]] = {
    "Queue": procpool.Queue,
    "Pipe": procpool.Pipe,
    "Lock": procpool.Lock,
    "Semaphore": lambda: procpool.Semaphore(2),
    "Event": procpool.Event,
    "Condition": procpool.Condition,
    "Barrier": lambda: procpool.Barrier(2),
}


def take_descriptors(leave: int) -> list[int]:
    """Open descriptors until there is none left, then close ``leave`` of them again."""
    taken = []
    while True:
        try:
            taken.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            break
    for _ in range(min(leave, len(taken))):
        os.close(taken.pop())
    return taken


def give_back(taken: list[int]) -> None:
    while taken:
        os.close(taken.pop())


def outcome(error: BaseException) -> str:
    errors.append(error)
    return f"{type(error).__name__}: {error}"


async def cycle(leave: int) -> dict[str, Any]:
    seen: dict[str, Any] = {"exitcode": "no crash"}
    async with procpool.Pool(1) as pool:
        await pool.run(abs, -1)
        end, other = procpool.Pipe()  # to be pickled for a running process: shared (see _fdshare)
        taken = take_descriptors(0)
        try:
            try:
                await pool.run(workfns.exit_hard, 1)
            except procpool.WorkerCrashedError as exc:
                errors.append(exc)
                seen["exitcode"] = exc.exitcode
            seen["replacement"] = await attempt(pool, -2)
            give_back(taken)
            taken = take_descriptors(leave)
            seen["start"] = await attempt(pool, -3)
            for name, make in IPC_OBJECTS.items():
                try:
                    made = make()
                except Exception as exc:
                    seen[name] = outcome(exc)
                else:
                    del made  # its descriptors close with it
                    seen[name] = "made"
            try:
                pickle.dumps(end)
            except Exception as exc:
                seen["share"] = outcome(exc)
            else:
                seen["share"] = "shared"
        finally:
            give_back(taken)
        seen["recovered"] = await pool.run(abs, -4)
    end.close()
    other.close()
    taken = take_descriptors(leave)
    try:
        async with procpool.Pool(1) as pool:
            seen["open"] = await pool.run(abs, -5)
    except Exception as exc:
        seen["open"] = outcome(exc)
    finally:
        give_back(taken)
    for thread in threading.enumerate():
        if thread.name == "procpool-fd-share":
            thread.join()  # it closes its descriptors as it ends
    seen["fds"] = len(os.listdir("/proc/self/fd"))
    return seen


async def attempt(pool: procpool.Pool, number: int) -> Any:
    """A task's result, or its error as text."""
    try:
        return await pool.run(abs, number)
    except Exception as exc:
        return outcome(exc)


async def main() -> None:
    async with procpool.Pool(1) as pool:  # the forkserver and its descriptors, before the count
        await pool.run(abs, -1)
    for leave in LEAVE:
        print(json.dumps(await cycle(leave)), flush=True)


if __name__ == "__main__":
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, hard))
    backend = sys.argv[1]
    options = {"use_uvloop": True} if backend == "uvloop" else {}
    anyio.run(main, backend="trio" if backend == "trio" else "asyncio", backend_options=options)
