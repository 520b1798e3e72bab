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

START_METHOD: ``forkserver``, ``spawn``, or ``forkserver-preload``: a forkserver that imports the
main module itself before it forks, as it does from Python 3.13.8 on (older ones are handed the
path under a key they do not read; this script hands it over under the key they read).
"""

import multiprocessing.spawn
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

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

if start_method == "forkserver-preload":
    start_method = "forkserver"
    _preparation_data = multiprocessing.spawn.get_preparation_data

    def _with_main_path(name: str) -> dict[str, Any]:
        data = _preparation_data(name)
        if "init_main_from_path" in data:
            data.setdefault("main_path", data["init_main_from_path"])
        return data

    multiprocessing.spawn.get_preparation_data = _with_main_path


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
