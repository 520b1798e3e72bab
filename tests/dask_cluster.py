"""A Dask LocalCluster shared by the tests, in a detached process of its own.

Like a real cluster, it is not a descendant of the test process: the leak check (see conftest)
then sees only what procpool itself leaves behind. Run as a script, it detaches, prints
``<pid> <scheduler address>`` and serves until its standard input closes, which happens when the
test session ends or dies. `running` starts it and stops it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

WORKERS = 2
_START_TIMEOUT = 60
_STOP_TIMEOUT = 20


def _serve() -> None:
    import dask
    from distributed import LocalCluster

    # One death is enough: the crash test needs no more than one worker killed to see its error.
    dask.config.set({"distributed.scheduler.allowed-failures": 0})
    with LocalCluster(
        n_workers=WORKERS,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",  # not None: the scheduler would still serve HTTP on 8787, maybe taken
    ) as cluster:
        print(os.getpid(), cluster.scheduler_address, flush=True)
        sys.stdin.read()


def _read_until_eof_or_line(stream: IO[str], timeout: float) -> str:
    """The next line of ``stream`` ('' at end of file), or TimeoutError after ``timeout`` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no answer from the Dask cluster process within {timeout} s")
    return stream.readline()


@contextmanager
def running(log: Path) -> Iterator[str]:
    """Start the cluster, yield its scheduler address, stop it; its logs go to ``log``."""
    with log.open("w") as log_file:
        launcher = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, text=True
        )
    assert launcher.stdin is not None
    assert launcher.stdout is not None
    pid = None
    try:
        launcher.wait(10)  # the launcher exits as soon as it has forked the cluster process
        line = _read_until_eof_or_line(launcher.stdout, _START_TIMEOUT)
        if not line:
            raise RuntimeError(f"the Dask cluster did not start:\n{log.read_text()}")
        pid_text, address = line.split()
        pid = int(pid_text)
        yield address
    finally:
        launcher.stdin.close()  # the cluster closes and its process exits, which closes its stdout
        try:
            while _read_until_eof_or_line(launcher.stdout, _STOP_TIMEOUT):
                pass
        except TimeoutError:
            if pid is not None:  # Dask's worker processes exit when their parent dies
                os.kill(pid, signal.SIGKILL)
        launcher.stdout.close()
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


if __name__ == "__main__":
    if os.fork():  # detach: the launcher exits, and this process is adopted by init
        os._exit(0)
    _serve()
