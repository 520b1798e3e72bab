"""A script that starts a pool at module level, without ``if __name__ == "__main__":`` (on purpose).

Usage: UNGUARDED_POOL_TEST=DIRECTORY python unguarded_pool.py MODE START_METHOD  (with the tests
directory on PYTHONPATH)

Every process that runs this module, the script itself and each process that imports it as the
main module (the workers; the forkserver, where it preloads the main module), leaves a file named
by its pid in DIRECTORY. They read their arguments from the environment: a forkserver has no
``sys.argv`` of the script's.

MODE:
- ``error``: nothing catches the pool's error: it ends the script.
- ``caught``: the script catches the pool's error, prints it and exits 0.
- ``stuck``: the processes that import this module as the main module stay in that import (as
  a slow one would), so the script waits for its workers until the test stops it with a signal.

START_METHOD: ``forkserver`` (whose forkserver imports the main module before it forks: procpool
has it do so on every Python) or ``spawn``.
"""

import os
import signal
import sys
import time
from pathlib import Path

import anyio

import procpool
import workfns

if len(sys.argv) == 3:
    os.environ["UNGUARDED_POOL_ARGS"] = " ".join(sys.argv[1:])
mode, start_method = os.environ["UNGUARDED_POOL_ARGS"].split()
directory = Path(os.environ["UNGUARDED_POOL_TEST"])
(directory / str(os.getpid())).touch()

if os.environ.get("UNGUARDED_POOL_OWNER", str(os.getpid())) != str(os.getpid()) and mode == "stuck":
    time.sleep(60)  # importing the main module, not the script itself: stay here
os.environ["UNGUARDED_POOL_OWNER"] = str(os.getpid())  # what the processes it starts inherit
# Ctrl-C as in a terminal, even where the test runner was started with SIGINT ignored (as a
# background job is), which this process would inherit.
signal.signal(signal.SIGINT, signal.default_int_handler)


async def main() -> None:
    async with procpool.Pool(2, start_method=start_method) as pool:
        print(await pool.run(workfns.square, 3), flush=True)


if mode == "caught":
    try:
        anyio.run(main)
    except RuntimeError as error:
        print(error, flush=True)
else:
    anyio.run(main)
