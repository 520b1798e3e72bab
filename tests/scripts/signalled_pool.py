"""Start a pool whose tasks sleep, spin in C and fork children of their own, print every pid,
then wait for a signal.

Usage: python signalled_pool.py MODE BACKEND DIRECTORY  (with the tests directory on PYTHONPATH)

MODE says how the owner meets its end:
- ``sigint``: Ctrl-C's KeyboardInterrupt leaves the pool's block by exception, which kills the
  workers; the script then prints ``interrupted`` and exits 0.
- ``sigterm-handled``: the script listens for SIGTERM (``anyio.open_signal_receiver``) and cancels
  its work, as a server does; it prints ``terminated`` and exits 0.
- ``default``: SIGTERM's or SIGKILL's default action ends the owner at once, with no cleanup; the
  workers' lifeline must take them, and the processes their tasks started, down.

With SIGNALLED_POOL_ARM_LATE set in its environment, the owner arms its workers' lifelines late
(see `arm_lifelines_late`).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time
from pathlib import Path

import anyio

import hostile_fns
import procpool
import workfns


async def run_pool(directory: Path) -> None:
    async with procpool.Pool(3) as pool:
        pool.submit(workfns.touch_after, str(directory / "sleeper"), 60)
        pool.submit(workfns.touch_then_spin, str(directory / "spinner"), 10**11)
        pool.submit(hostile_fns.fork_children_then_sleep, str(directory / "forker"), 60)
        pids = [(await hostile_fns.read_pids(directory / name, 1))[0] for name in ("sleeper", "spinner")]
        pids += await hostile_fns.read_pids(directory / "forker", 3)
        print("pids", *pids, flush=True)
        await anyio.sleep(60)


async def main(mode: str, directory: Path) -> None:
    if mode != "sigterm-handled":
        await run_pool(directory)
        return
    async with anyio.create_task_group() as task_group:

        async def stop_on_sigterm() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    task_group.cancel_scope.cancel()
                    return

        task_group.start_soon(stop_on_sigterm)
        await run_pool(directory)
    print("terminated", flush=True)


def arm_lifelines_late() -> None:
    """Make certain the race that a loaded machine makes now and then: the owner arms each new
    worker's lifeline only after the worker has armed it itself."""
    from procpool._engine import _process

    arm = _process.kill_at_end_of_file

    def late(fd: int, owner: int) -> None:
        time.sleep(0.3)
        arm(fd, owner)

    _process.kill_at_end_of_file = late


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for stacks if this hangs
    if os.environ.get("SIGNALLED_POOL_ARM_LATE"):
        arm_lifelines_late()
    # Ctrl-C as in a terminal, even where the test runner was started with SIGINT ignored (as a
    # background job is), which this process would inherit.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    mode, backend, directory = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    try:
        anyio.run(main, mode, directory, backend=backend)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
