"""Run a pool into a process limit, lift the limit, and say what happened.

Usage (with the tests directory on PYTHONPATH), limited by
    a pids cgroup of its own, which this script joins first (it binds root too):
        python process_limit.py BACKEND cgroup DIRECTORY
    RLIMIT_NPROC (it binds any user but root):
        python process_limit.py BACKEND rlimit

With a worker running, no process (nor thread) can be started any more: a `procpool.Process`
cannot start, the worker exits (``os._exit(1)``), and the next task needs a new worker; so does
the one after, while the thread that starts processes is kept busy. Then the limit is lifted: the
next task needs a new worker again, and one more exits with ``os._exit(1)``. Prints the outcomes
as one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import psutil

import procpool
import workfns


class CgroupLimit:
    """The pids cgroup ``directory``, which this process joins: its children are in it too."""

    def __init__(self, directory: str) -> None:
        self._directory = Path(directory)
        (self._directory / "cgroup.procs").write_text(str(os.getpid()))

    def impose(self) -> None:
        # One below the tasks (threads included) in the group now: no fork succeeds, even once
        # one of them has exited.
        current = int((self._directory / "pids.current").read_text())
        (self._directory / "pids.max").write_text(str(current - 1))

    def lift(self) -> None:
        (self._directory / "pids.max").write_text("max")


class RlimitLimit:
    """RLIMIT_NPROC, of this process and of multiprocessing's forkserver (the workers' parent)."""

    def __init__(self) -> None:
        self._limits = resource.getrlimit(resource.RLIMIT_NPROC)
        self._forkserver = 0

    def impose(self) -> None:
        (self._forkserver,) = [
            child.pid for child in psutil.Process().children() if "forkserver" in " ".join(child.cmdline())
        ]
        for pid in (os.getpid(), self._forkserver):  # soft limit 0: this user may start no process
            resource.prlimit(pid, resource.RLIMIT_NPROC, (0, self._limits[1]))

    def lift(self) -> None:
        for pid in (os.getpid(), self._forkserver):
            with contextlib.suppress(ProcessLookupError):  # a forkserver that died of the limit
                resource.prlimit(pid, resource.RLIMIT_NPROC, self._limits)


def outcome(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


async def exit_code(pool: procpool.Pool) -> Any:
    """The exit code reported for a worker whose task calls ``os._exit(1)``."""
    try:
        await pool.run(workfns.exit_hard, 1)
    except procpool.WorkerCrashedError as exc:
        return exc.exitcode
    return "no crash"


async def attempt(pool: procpool.Pool, number: int) -> Any:
    """A task's result, or its error as text."""
    try:
        return await pool.run(abs, number)
    except Exception as exc:
        return outcome(exc)


def hold(held: threading.Event, release: threading.Event) -> None:
    """Keep anyio's worker thread (the only one: every start so far ran in it) until ``release``:
    the next start needs a thread of its own, which cannot be started under the limit either."""
    held.set()
    release.wait()


async def main(limit: CgroupLimit | RlimitLimit) -> None:
    seen: dict[str, Any] = {}
    async with procpool.Pool(1) as pool:
        await pool.run(abs, -1)
        limit.impose()
        try:
            try:
                await procpool.Process(target=abs, args=(-1,)).start()
            except Exception as exc:
                seen["process"] = outcome(exc)
            seen["exitcode"] = await exit_code(pool)
            seen["limited"] = await attempt(pool, -2)
            async with anyio.create_task_group() as holding:
                release = threading.Event()
                held = threading.Event()
                holding.start_soon(anyio.to_thread.run_sync, hold, held, release)
                while not held.is_set():
                    await anyio.sleep(0.001)
                seen["no_thread"] = await attempt(pool, -3)
                release.set()
        finally:
            limit.lift()
        seen["lifted"] = await attempt(pool, -4)
        seen["exitcode_after"] = await exit_code(pool)
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    backend, how = sys.argv[1:3]
    limit = CgroupLimit(sys.argv[3]) if how == "cgroup" else RlimitLimit()
    options = {"use_uvloop": True} if backend == "uvloop" else {}
    anyio.run(main, limit, backend="trio" if backend == "trio" else "asyncio", backend_options=options)
