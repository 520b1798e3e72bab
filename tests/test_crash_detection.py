"""Crash detection: a worker's death is noticed at once and counted against the right task, even
when it dies before beginning the task, when a process it started holds its descriptors, or when
it closes its channel and lives on; a cancel is never lost in the meantime."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import anyio
import psutil
import pytest

import crash_fns
import procpool
import workfns

pytestmark = pytest.mark.anyio


def _kill_descendant(pid_file: Path) -> None:
    """SIGKILL the ``sleep 30`` a task started in a session of its own (out of the pool's reach),
    and wait until it has died: a zombie, for init may be slow to reap the orphan."""
    if not pid_file.exists():
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        child = psutil.Process(int(pid_file.read_text()))
        if child.name() == "sleep":
            child.send_signal(signal.SIGKILL)
            deadline = time.monotonic() + 5
            while child.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
                time.sleep(0.005)


def _sockets(pid: int) -> list[str]:
    """The sockets among the open descriptors of process ``pid``. A descriptor closed between the
    listing and its reading is not held: a freshly started program's loader opens and closes its
    libraries' files (``sleep``'s fd 3 once vanished so, failing this check at random)."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return [link for link in links if link.startswith("socket:")]


async def _lines(path: Path, count: int) -> None:
    with anyio.fail_after(10):
        while not path.exists() or len(path.read_text().splitlines()) < count:
            await anyio.sleep(0.01)


@pytest.mark.timeout(30)
async def test_a_worker_that_dies_receiving_a_task_makes_it_a_poison_task() -> None:
    """Each worker dies (MemoryError) while reading the large argument, before it begins the task:
    the task is the likely cause, so each death counts against it, and it fails after
    ``max_crashes_per_task`` deaths instead of being sent to one new worker after another."""
    headroom = 16 * 2**20
    # In the pickle: a large buffer in shared memory is read once the task has begun, and a failed
    # allocation there is the task's MemoryError (tests/test_buffers.py).
    async with procpool.Pool(
        1,
        max_crashes_per_task=2,
        initializer=crash_fns.limit_address_space,
        initargs=(headroom,),
        buffer_threshold=None,
    ) as pool:
        with anyio.fail_after(15):
            with pytest.raises(procpool.PoisonTaskError) as info:
                await pool.run(crash_fns.size_of, bytes(64 * 2**20))
        assert info.value.crashes == 2
        assert info.value.exitcode == 1  # the MemoryError ended each worker
        assert await pool.run(workfns.square, 6) == 36  # small arguments still fit


@pytest.mark.timeout(30)
async def test_a_task_that_never_began_goes_back_until_its_crashes_run_out() -> None:
    """A death before the task began uses no retry (the task never ran): it goes back to the
    queue while its crashes are under the limit, with or without ``retries``."""
    async with procpool.Pool(
        1,
        max_crashes_per_task=3,
        initializer=crash_fns.limit_address_space,
        initargs=(16 * 2**20,),
        buffer_threshold=None,  # in the pickle, as above
    ) as pool:
        with anyio.fail_after(15):
            with pytest.raises(procpool.PoisonTaskError) as info:
                await pool.options(retries=10).run(crash_fns.size_of, bytes(64 * 2**20))
        assert info.value.crashes == 3


@pytest.mark.timeout(30)
async def test_a_death_read_in_one_go_with_a_last_frame_is_seen(tmp_path: Path) -> None:
    """A worker prints a line and dies while a task sent ahead waits unread in its channel, which
    leaves the parent's end in error (ECONNRESET); the event loop, busy meanwhile, finds the line
    and the death in one readiness event. The death is still seen: uvloop reports such an event
    once, and then stops watching the descriptor, however much is left to read."""
    began = tmp_path / "began"
    async with procpool.Pool(1) as pool:
        # Short tasks first (the first one's time includes the worker's start): a worker that runs
        # short tasks takes one ahead of the running one.
        assert await pool.map(workfns.square, range(50)) == [i * i for i in range(50)]
        dying = pool.submit(crash_fns.touch_then_print_and_die, str(began), 0.5, "last words")
        with anyio.fail_after(10):
            while not began.exists():
                await anyio.sleep(0.01)
        behind = pool.submit(workfns.square, 3)  # sent ahead; the worker, in the task, leaves it unread
        await anyio.sleep(0.05)
        time.sleep(1.0)  # noqa: ASYNC251 (the loop must be busy while the worker prints and dies)
        with anyio.fail_after(10):
            with pytest.raises(procpool.WorkerCrashedError):
                await dying
            assert await behind == 9


@pytest.mark.timeout(30)
async def test_a_worker_killed_while_a_large_task_is_written_to_it_frees_the_writer(tmp_path: Path) -> None:
    """A process in another session holds the worker's channel, so the worker's death does not
    end the parent's write of a large argument that the (stopped) worker was not reading: the
    parent sees the death itself, the write ends, and the task, never begun, goes to a new worker."""
    pid_file = tmp_path / "child.pid"
    size = 64 * 2**20  # far more than a socket buffer holds
    try:
        async with procpool.Pool(1) as pool:
            pid = await pool.run(crash_fns.start_session, str(pid_file), True)
            os.kill(pid, signal.SIGSTOP)
            task = pool.submit(crash_fns.size_of, bytes(size))
            await anyio.sleep(0.2)  # the parent is now waiting to write more of it
            os.kill(pid, signal.SIGKILL)
            with anyio.fail_after(10):
                assert await task == size
            assert await pool.run(workfns.getpid) != pid
    finally:
        _kill_descendant(pid_file)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
@pytest.mark.parametrize("inherit_all", [False, True], ids=["inherited", "all-inherited"])
@pytest.mark.parametrize("how", ["exit", "sigkill"])
async def test_a_crash_is_seen_at_once_while_a_process_in_another_session_lives_on(
    tmp_path: Path, start_method: str, inherit_all: bool, how: str
) -> None:
    """The task starts ``sleep 30`` in a session of its own, passing it the worker's descriptors,
    then dies. The worker's channel is close-on-exec, so the child does not hold it; and where
    the task hands it over anyway (``all-inherited``), the parent watches the process itself."""
    pid_file = tmp_path / "child.pid"
    try:
        async with procpool.Pool(1, start_method=start_method) as pool:
            await pool.run(workfns.square, 1)  # the worker is up: what follows times the crash alone
            started = time.monotonic()
            with anyio.fail_after(5), pytest.raises(procpool.WorkerCrashedError) as info:
                await pool.run(crash_fns.start_session_then_die, str(pid_file), how, inherit_all)
            elapsed = time.monotonic() - started
            assert elapsed < 1, f"the crash was reported after {elapsed:.2f} s"
            assert (info.value.exitcode, info.value.signal_name) == ((1, None) if how == "exit" else (-9, "SIGKILL"))
            child = psutil.Process(int(pid_file.read_text()))
            assert child.is_running()  # it lives on
            if not inherit_all:  # the worker's channel and lifeline (its only sockets) stayed behind
                assert _sockets(child.pid) == []
            assert await pool.run(workfns.square, 3) == 9
    finally:
        _kill_descendant(pid_file)


@pytest.mark.timeout(30)
async def test_a_worker_that_closes_its_channel_and_lives_on_is_killed_after_kill_grace(tmp_path: Path) -> None:
    """End of file on the channel, but the process goes on: the wait for its exit is bounded."""
    log = tmp_path / "runs"
    async with procpool.Pool(1, kill_grace=0.2) as pool:
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(procpool.WorkerCrashedError) as info:
            await pool.run(crash_fns.close_channel_then_sleep, str(log), 30)
        assert time.monotonic() - started < 5
        assert info.value.signal_name == "SIGKILL"
        assert await pool.run(workfns.square, 4) == 16


@pytest.mark.timeout(30)
async def test_cancelling_a_task_whose_worker_is_dying_stops_it_without_a_retry(tmp_path: Path) -> None:
    """The worker closed its channel (the parent is waiting for it to exit) when the caller gives
    up: the cancel ends that wait at once, and a cancelled task is never run again."""
    log = tmp_path / "runs"
    # A long grace, so that the cancel, not the grace, ends the wait for the worker's exit.
    async with procpool.Pool(1, kill_grace=10) as pool:
        cancelled_at = 0.0
        with anyio.CancelScope() as scope:

            async def cancel_after_close() -> None:
                nonlocal cancelled_at
                await _lines(log, 1)
                await anyio.sleep(0.1)  # the parent has seen the channel's end of file
                cancelled_at = time.monotonic()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_after_close)
                await pool.options(retries=3).run(crash_fns.close_channel_then_sleep, str(log), 3)
        returned_after = time.monotonic() - cancelled_at
        assert scope.cancelled_caught
        assert returned_after < 2, f"the canceller returned {returned_after:.1f} s after the cancel"
        await anyio.sleep(0.3)  # a retry would have begun by now
        assert log.read_text().splitlines() == ["run"]
        assert await pool.run(workfns.square, 5) == 25
