"""Submit large calls while a signal handler raises at some point of each, as a SIGTERM handler
that calls ``sys.exit`` or Ctrl-C's KeyboardInterrupt can: the pool copies a large call's buffers
with helper threads, which must never copy into memory the interrupted call let go of.

The handler raises only inside the copy (see `interrupt`).

Usage: python interrupted_large_calls.py CALLS  (with the tests directory on PYTHONPATH).
Prints ``done D interrupted I`` and exits 0 if every call that was not interrupted returned the
right result.
"""

from __future__ import annotations

import faulthandler
import random
import signal
import sys
from types import FrameType

import anyio

import buffer_fns
import procpool

MIB = 2**20


class Interrupted(Exception):
    pass


def interrupt(signum: int, frame: FrameType | None) -> None:
    """Raise if the signal came while the call's buffers were being copied; else try again soon.
    Anywhere else a raising handler may leave any Python code half done (a descriptor sent
    without its frame, say), which is not what this script is about."""
    while frame is not None:
        if frame.f_code.co_name == "copy_into" and frame.f_code.co_filename.endswith("_buffers.py"):
            raise Interrupted
        frame = frame.f_back
    if armed:
        signal.setitimer(signal.ITIMER_REAL, 0.0002)


armed = False  # while a call is being submitted


async def main(calls: int) -> None:
    global armed
    chunks = [bytes([i]) * MIB for i in range(32)]  # 32 MiB in one call: copied by several threads
    done = interrupted = 0
    signal.signal(signal.SIGALRM, interrupt)
    async with procpool.Pool(1, buffer_threshold=64 * 1024) as pool:
        for _ in range(calls):
            try:
                try:
                    armed = True
                    signal.setitimer(signal.ITIMER_REAL, random.uniform(0.0001, 0.03))
                    task = pool.submit(buffer_fns.uniform_chunks, chunks)
                finally:
                    armed = False
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except Interrupted:
                interrupted += 1
                continue
            except procpool.SerializationError as error:  # interrupted while pickling
                if not isinstance(error.__cause__, Interrupted):
                    raise
                interrupted += 1
                continue
            assert await task == [(i, MIB) for i in range(32)]
            done += 1
    print("done", done, "interrupted", interrupted)


if __name__ == "__main__":
    faulthandler.dump_traceback_later(50, exit=True)  # a hang shows where, before the test's timeout
    anyio.run(main, int(sys.argv[1]))
