"""Resource limits: a pool that runs out of file descriptors or processes fails its tasks with an
error that names the cause, leaks nothing, and works again once the limit is lifted.

Each case runs in a script of its own (tests/scripts/), as it lowers that process's limits."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import procpool
from script_env import script_env

SCRIPTS = Path(__file__).resolve().parent / "scripts"
BACKENDS = ["asyncio", "uvloop", "trio"]
EMFILE = "[Errno 24] Too many open files"
EAGAIN = "[Errno 11] Resource temporarily unavailable"
NO_THREAD = "[Errno 11] can't start new thread"


def _run(*args: str) -> list[dict[str, object]]:
    """Run a script; the JSON objects it printed, one per line."""
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, env=script_env(), check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", BACKENDS)
def test_descriptor_exhaustion_leaks_nothing_and_the_pool_recovers(backend: str) -> None:
    cycles = _run(str(SCRIPTS / "descriptor_limit.py"), backend)
    assert len(cycles) == 8
    for number, seen in enumerate(cycles):
        context = f"cycle {number}: {seen}"
        assert seen["exitcode"] == 1, context
        # The replacement of the worker that exited, and a start that finds a few descriptors.
        for start in (seen["replacement"], seen["start"]):
            assert str(start).startswith(f"WorkerCrashedError: could not start a worker: {EMFILE}. "), context
            assert "limit on open files (RLIMIT_NOFILE" in str(start), context
        for name in ("Queue", "Pipe", "Lock", "Semaphore", "Event", "Condition", "Barrier"):
            assert seen[name] in ("made", f"OSError: {EMFILE}"), context
        assert seen["share"] in ("shared", f"OSError: {EMFILE}"), context
        assert seen["recovered"] == 4, context
        # A pool opened with too few descriptors says which limit it met, whatever step met it
        # (the pool's epoll set, a worker's sockets, its memory file...).
        if seen["open"] != 5:
            assert str(seen["open"]).startswith(f"WorkerCrashedError: could not start a worker: {EMFILE}. "), context
            assert "limit on open files (RLIMIT_NOFILE" in str(seen["open"]), context
    assert cycles[-1]["fds"] == cycles[0]["fds"], [seen["fds"] for seen in cycles]


def _pids_cgroup() -> Path | None:
    """The directory of a new pids cgroup under this process's own, or None where none can be made
    (no pids controller, or no permission)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            parent = Path("/sys/fs/cgroup/pids") / path.lstrip("/")  # cgroup v1
        elif controllers == "":
            parent = Path("/sys/fs/cgroup") / path.lstrip("/")  # cgroup v2: if it delegates pids
        else:
            continue
        directory = parent / f"procpool-test-{uuid.uuid4().hex[:8]}"
        try:
            directory.mkdir()
        except OSError:
            continue
        if (directory / "pids.max").exists():
            return directory
        directory.rmdir()
    return None


def _remove_cgroup(directory: Path) -> None:
    """Remove the cgroup once the script's processes (its forkserver exits after it) are gone."""
    deadline = time.monotonic() + 10
    while True:
        try:
            directory.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def process_limit() -> Iterator[list[str]]:
    """How the script limits the processes it may start: RLIMIT_NPROC, which binds every user but
    root; or, as root, a pids cgroup of its own."""
    if os.geteuid() != 0:
        yield ["rlimit"]
        return
    directory = _pids_cgroup()
    if directory is None:
        pytest.skip("running as root, whom RLIMIT_NPROC does not bind, and no pids cgroup can be made here")
    try:
        yield ["cgroup", str(directory)]
    finally:
        _remove_cgroup(directory)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", BACKENDS)
def test_process_limit_gives_clear_errors_and_the_pool_recovers(backend: str, process_limit: list[str]) -> None:
    (seen,) = _run(str(SCRIPTS / "process_limit.py"), backend, *process_limit)
    assert seen["process"] == f"BlockingIOError: {EAGAIN}", seen
    # The forkserver that could not start a process still reports its workers' exit codes.
    assert seen["exitcode"] == 1, seen
    limited = str(seen["limited"])
    assert limited.startswith(f"WorkerCrashedError: could not start a worker: {EAGAIN}. "), seen
    assert "limit on processes is reached (RLIMIT_NPROC" in limited, seen
    assert str(seen["no_thread"]).startswith(f"WorkerCrashedError: could not start a worker: {NO_THREAD}. "), seen
    assert seen["lifted"] == 4, seen
    assert seen["exitcode_after"] == 1, seen


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="workers are watched by pidfd only on Linux")
async def test_a_pool_works_in_a_process_with_descriptors_numbered_above_1024() -> None:
    """A server with many connections open gives its pool descriptors numbered 1024 and above,
    which ``select`` refuses: the pool watches its workers without it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100 - len(os.listdir("/proc/self/fd")))]
    try:
        async with procpool.Pool(1) as pool:
            pid = await pool.run(os.getpid)
            os.kill(pid, signal.SIGKILL)
            with anyio.fail_after(10):
                while pool.stats().crashed < 1:  # the pool looks at its workers as it reports
                    await anyio.sleep(0.01)
            assert await pool.run(abs, -4) == 4
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
