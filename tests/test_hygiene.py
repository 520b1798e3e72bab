"""Process hygiene: no worker outlives its owner, workers ignore Ctrl-C, and every way of leaving a
pool stops its workers."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import anyio
import psutil
import pytest

import procpool
import workfns
from script_env import script_env

TESTS = Path(__file__).resolve().parent
SCRIPTS = TESTS / "scripts"
START_METHODS = ["forkserver", "spawn"]

# multiprocessing's per-interpreter helpers; the forkserver's own children (our workers) share its
# command line, so helpers are recognised only among the direct children of this process.
_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has exited; only its exit status is left)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _survivors(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if _alive(p)]


def _describe(processes: Iterable[psutil.Process]) -> list[str]:
    described = []
    for p in processes:
        try:
            described.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
        except psutil.Error:
            described.append(f"{p.pid} (gone)")
    return described


def _holding(fd: int) -> list[psutil.Process]:
    """The other processes that have the pipe or socket of this process's ``fd`` open."""
    target = os.readlink(f"/proc/self/fd/{fd}")
    return [
        process
        for process in psutil.process_iter()
        if process.pid != os.getpid() and target in _descriptor_targets(process.pid)
    ]


def _descriptor_targets(pid: int) -> set[str]:
    """What the open descriptors of process ``pid`` point to (none if it is gone or not ours)."""
    targets = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return targets
    for name in names:
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:  # closed meanwhile
            continue
    return targets


def _workers() -> list[psutil.Process]:
    """Live descendants of this process other than multiprocessing's forkserver and resource
    tracker: the pool workers, whether children of the forkserver or (spawn) our own children."""
    me = psutil.Process()
    helpers = set()
    for child in me.children():
        try:
            if any(helper in " ".join(child.cmdline()) for helper in _HELPERS):
                helpers.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return [p for p in me.children(recursive=True) if p.pid not in helpers and _alive(p)]


async def _wait_for_pid(path: Path, timeout: float = 10) -> int:
    """The pid a task wrote into ``path`` (see ``workfns.touch_after``) once it has started."""
    with anyio.fail_after(timeout):
        while True:
            try:
                return int(path.read_text().split()[0])
            except (OSError, IndexError, ValueError):
                await anyio.sleep(0.01)


# -- the owner dies ------------------------------------------------------------------------------


@pytest.mark.parametrize("start_method", START_METHODS)
def test_sigkilled_owner_leaves_no_process_behind(start_method: str, tmp_path: Path) -> None:
    """SIGKILL gives the owner no chance to clean up: the lifeline must end a sleeping worker, one
    stuck in C holding the GIL, and those whose task ignores, blocks or handles SIGIO (and a child
    that inherited the ignoring), and multiprocessing's helpers must exit too, within 2 s."""
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        script = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "busy_pool.py"), start_method, str(tmp_path)],
            stdout=stdout,
            stderr=stderr,
            env=script_env(),
        )
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 20
        while not stdout_path.read_text().endswith("\n"):
            assert script.poll() is None, f"the script exited early: {stderr_path.read_text()}"
            assert time.monotonic() < deadline, f"the script never reported its workers: {stderr_path.read_text()}"
            time.sleep(0.01)
        reported = {int(pid) for pid in stdout_path.read_text().split()[1:]}
        descendants = psutil.Process(script.pid).children(recursive=True)
        by_pid = {p.pid: p for p in descendants}
        assert reported <= by_pid.keys(), (reported, _describe(descendants))
        assert all(_alive(by_pid[pid]) for pid in reported)
        helpers = [p for p in descendants if p.ppid() == script.pid and p.pid not in reported]
        if start_method == "forkserver":
            assert any("multiprocessing.forkserver" in " ".join(p.cmdline()) for p in helpers), _describe(helpers)
        time.sleep(0.1)  # the spinner is now deep in sum(): only a signal stops it

        script.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert script.wait(5) == -signal.SIGKILL
        while (survivors := _survivors(descendants)) and time.monotonic() < killed_at + 2:
            time.sleep(0.01)
        assert not survivors, f"alive 2 s after their owner was SIGKILLed: {_describe(survivors)}"
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
        for process in _survivors(descendants):  # orphans: not our children, no fixture sees them
            process.kill()
    assert "Traceback" not in stderr_path.read_text()


# -- signals -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_workers_ignore_sigint(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group; it is the owner's to handle, not the workers'."""
    async with procpool.Pool(1) as pool:
        pid = await pool.run(workfns.getpid)
        os.kill(pid, signal.SIGINT)  # idle
        path = tmp_path / "pid"
        task = pool.submit(workfns.touch_after, str(path), 0.5)
        assert await _wait_for_pid(path) == pid
        os.kill(pid, signal.SIGINT)  # busy
        with anyio.fail_after(3):
            assert await task == pid
        assert path.read_text() == f"{pid} done"
        assert await pool.run(workfns.getpid) == pid  # the same worker, not a replacement


# -- leaving the pool ----------------------------------------------------------------------------


class _LeaveError(Exception):
    pass


@pytest.mark.anyio
async def test_exit_by_exception_kills_running_workers(tmp_path: Path) -> None:
    """A sleeping worker, one stuck in C and one ignoring SIGTERM are all gone when the block
    exits, the queued task never runs, and the exception propagates as itself."""
    error = _LeaveError("leaving")
    started = time.monotonic()
    with pytest.raises(_LeaveError) as info:
        async with procpool.Pool(3, kill_grace=0.3) as pool:
            paths = [tmp_path / name for name in ("sleeper", "spinner", "stubborn")]
            tasks = [
                pool.submit(workfns.touch_after, str(paths[0]), 30),
                pool.submit(workfns.touch_then_spin, str(paths[1]), 10**11),
                pool.submit(workfns.touch_then_sleep_ignoring_sigterm, str(paths[2]), 30),
            ]
            queued = pool.submit(workfns.square, 2)
            processes = [psutil.Process(await _wait_for_pid(path)) for path in paths]
            raise error
    assert info.value is error
    assert error.__context__ is None
    assert error.__cause__ is None
    assert time.monotonic() - started < 3
    assert all(task.cancelled() for task in tasks)
    assert queued.cancelled()
    assert not _survivors(processes), _describe(_survivors(processes))
    assert not _workers()
    assert paths[0].read_text() == str(processes[0].pid)  # never reached " done"


@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.anyio
async def test_workers_are_ready_on_entry(start_method: str) -> None:
    """``async with`` returns with every worker started; they run run() and map() calls."""
    async with procpool.Pool(2, start_method=start_method) as pool:
        workers = _workers()
        assert len(workers) == 2, _describe(workers)
        pids = {p.pid for p in workers}
        assert await pool.run(workfns.square, 7) == 49
        assert await pool.run(lambda x: x - 1, 7) == 6
        assert [y async for y in pool.map(workfns.square, range(6))] == [0, 1, 4, 9, 16, 25]
        assert sorted([y async for y in pool.map(workfns.add, range(4), range(4), ordered=False)]) == [0, 2, 4, 6]
        seen = {await pool.run(workfns.getpid) for _ in range(6)}
        assert seen <= pids
        assert {p.pid for p in _workers()} == pids  # no worker was replaced
    assert not _survivors(workers)


@pytest.mark.anyio
async def test_normal_exit_stops_every_worker() -> None:
    async with procpool.Pool(2) as pool:
        workers = _workers()
        assert len(workers) == 2
        tasks = [pool.submit(workfns.sleep_and_return, 0.1, i) for i in range(4)]
    # Stopped when the block exits, not just eventually.
    assert not _survivors(workers), _describe(_survivors(workers))
    assert not _workers()
    assert [task.result() for task in tasks] == [0, 1, 2, 3]


@pytest.mark.anyio
async def test_aclose_is_idempotent_and_the_block_still_exits() -> None:
    async with procpool.Pool(2) as pool:
        workers = _workers()
        task = pool.submit(workfns.sleep_and_return, 0.2, "finished")
        await pool.aclose()
        assert task.result() == "finished"  # aclose waited for it
        assert not _survivors(workers), _describe(_survivors(workers))
        await pool.aclose()
        async with anyio.create_task_group() as tg:  # concurrent calls return too
            tg.start_soon(pool.aclose)
            tg.start_soon(pool.aclose)
        with pytest.raises(procpool.PoolClosedError):
            pool.submit(workfns.square, 1)
        with pytest.raises(procpool.PoolClosedError):
            await pool.run(workfns.square, 1)
    await pool.aclose()
    assert not _workers()


def test_unclosed_pool_does_not_hang_interpreter_exit() -> None:
    done = subprocess.run(
        [sys.executable, str(TESTS / "scripts" / "unclosed_pool.py")],
        capture_output=True,
        text=True,
        timeout=30,
        env=script_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert pids
    time.sleep(0.2)
    assert not _survivors(psutil.Process(pid) for pid in pids if psutil.pid_exists(pid))


@pytest.mark.parametrize(
    ("mode", "backend", "warning_action"),
    [
        ("closed", "asyncio", "always"),
        ("closed", "uvloop", "always"),
        ("running", "asyncio", "always"),
        # Warnings turned into errors (as test suites often do) must not keep the pool alive.
        ("closed", "asyncio", "error"),
        ("running", "asyncio", "error"),
    ],
)
def test_abandoned_pool_is_killed_when_collected(mode: str, backend: str, warning_action: str, tmp_path: Path) -> None:
    """A pool opened without ``async with`` and dropped unclosed, its event loop closed or running
    on: its workers, one of them busy for hours, go as the pool is collected, with a
    ResourceWarning (raised, if warnings are errors), rather than at the interpreter's exit; with
    the loop closed, its descriptors too."""
    script_args = [str(SCRIPTS / "abandoned_pool.py"), mode, backend, str(tmp_path)]
    with subprocess.Popen(
        [sys.executable, "-W", f"{warning_action}::ResourceWarning", *script_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    ) as script:
        assert script.stdin is not None
        assert script.stdout is not None
        assert script.stderr is not None
        try:
            line = script.stdout.readline()
            assert line.startswith("pids "), (line, script.stderr.read() if script.poll() is not None else "")
            pids = [int(pid) for pid in line.split()[1:]]
            dropped = script.stdout.readline().split()
            assert dropped[0] == "dropped"
            assert not _gone_within(pids, 5), "the workers outlived their dropped pool"
            if mode == "closed":
                assert dropped[1:] == ["0"], "descriptors of the dropped pool left open"
            script.stdin.close()
            assert script.wait(10) == 0
            stderr = script.stderr.read()
        finally:
            if script.poll() is None:
                script.kill()
    assert "ResourceWarning: procpool.Pool(workers=2) was never closed" in stderr, stderr


# -- signals to the owner ------------------------------------------------------------------------


def _start_signalled_pool(
    mode: str, backend: str, tmp_path: Path, *, arm_late: bool = False
) -> tuple[subprocess.Popen[str], list[int]]:
    """Start scripts/signalled_pool.py (whose owner arms its workers' lifelines late, with
    ``arm_late``); return it and the pids it reports (two workers, and the third worker with the
    two processes its task started)."""
    env = script_env()
    if arm_late:
        env["SIGNALLED_POOL_ARM_LATE"] = "1"
    script = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "signalled_pool.py"), mode, backend, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert script.stdout is not None
    line = script.stdout.readline()  # the script prints its pids once every task has started
    assert line.startswith("pids "), (line, script.stderr.read() if script.poll() is not None else "")
    return script, [int(pid) for pid in line.split()[1:]]


def _gone_within(pids: list[int], seconds: float) -> list[psutil.Process]:
    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    deadline = time.monotonic() + seconds
    while (survivors := _survivors(processes)) and time.monotonic() < deadline:
        time.sleep(0.02)
    for process in survivors:  # orphans: not our children, no fixture sees them
        process.kill()
    return survivors


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("mode", "signum", "last_line", "exit_status", "arm_late"),
    [
        pytest.param("sigint", signal.SIGINT, "interrupted", 0, False, id="SIGINT"),
        pytest.param("sigterm-handled", signal.SIGTERM, "terminated", 0, False, id="SIGTERM-handled"),
        pytest.param("default", signal.SIGTERM, "", -signal.SIGTERM, False, id="SIGTERM-default"),
        pytest.param("default", signal.SIGKILL, "", -signal.SIGKILL, False, id="SIGKILL"),
        pytest.param("default", signal.SIGKILL, "", -signal.SIGKILL, True, id="SIGKILL-owner-armed-late"),
    ],
)
@pytest.mark.timeout(60)
def test_a_signal_to_the_owner_leaves_no_process(
    mode: str, signum: int, last_line: str, exit_status: int, arm_late: bool, backend: str, tmp_path: Path
) -> None:
    """Ctrl-C, or a SIGTERM the program handles, leaves the pool's block and stops the workers;
    SIGTERM or SIGKILL with their default action end the owner at once, and the lifeline takes the
    workers down. Either way the processes a task started go too (they are in its worker's group),
    also when the owner armed a worker's lifeline after the worker did (a race on a loaded machine,
    in which the owner's arming, for the worker alone, used to win: its task's processes lived on)."""
    script, pids = _start_signalled_pool(mode, backend, tmp_path, arm_late=arm_late)
    try:
        time.sleep(0.1)
        script.send_signal(signum)
        try:
            stdout, stderr = script.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            if script.poll() is None:
                script.send_signal(signal.SIGUSR1)  # the script dumps every thread's stack (faulthandler)
                time.sleep(1)
                script.kill()
                pytest.fail(f"the owner did not exit after {signal.Signals(signum).name}: {script.communicate()[1]}")
            # The owner is gone, but another process still holds its output open: say which.
            assert script.stdout is not None
            holders = _holding(script.stdout.fileno())
            described = _describe(holders)
            for holder in holders:
                holder.kill()
            script.communicate()  # its end of file, now: the pipes close
            pytest.fail(f"the owner ended ({script.returncode}), but its output stayed open in: {described}")
    finally:
        if script.poll() is None:
            script.kill()
            script.communicate()
    survivors = _gone_within(pids, 3)
    assert not survivors, f"alive after the owner got {signal.Signals(signum).name}: {_describe(survivors)}"
    assert script.returncode == exit_status, stderr
    assert stdout.strip() == last_line
    assert "Traceback" not in stderr, stderr


# -- a script without the main guard --------------------------------------------------------------

GUARD = 'if __name__ == "__main__":'
UNGUARDED = ["forkserver", "spawn"]


def _start_unguarded(mode: str, start_method: str, tmp_path: Path, run_as: str = "script") -> subprocess.Popen[str]:
    """Start scripts/unguarded_pool.py, as a script or (``run_as="python-m"``) as a module run by
    name; every process it starts carries ``tmp_path`` in its environment (see `_tagged`)."""
    env = script_env()
    env["UNGUARDED_POOL_TEST"] = str(tmp_path)
    main = [str(SCRIPTS / "unguarded_pool.py")] if run_as == "script" else ["-m", "scripts.unguarded_pool"]
    return subprocess.Popen(
        [sys.executable, *main, mode, start_method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _tagged(tmp_path: Path) -> list[psutil.Process]:
    """The live processes started by a `_start_unguarded` script: its own descendants, and those
    that outlived it wherever they were reparented."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("UNGUARDED_POOL_TEST") == str(tmp_path) and _alive(process):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _left_behind(tmp_path: Path, seconds: float) -> list[str]:
    """What is still alive ``seconds`` after the script ended (then killed, as no fixture sees it)."""
    deadline = time.monotonic() + seconds
    while (survivors := _tagged(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    described = _describe(survivors)
    for process in survivors:
        process.kill()
    return described


@pytest.mark.parametrize(
    ("mode", "start_method", "run_as"),
    [(mode, start_method, "script") for mode in ("error", "caught") for start_method in UNGUARDED]
    + [("error", "forkserver", "python-m"), ("caught", "forkserver", "python-m")],
)
@pytest.mark.timeout(60)
def test_a_script_without_the_main_guard_gets_one_error_that_names_it(
    mode: str, start_method: str, run_as: str, tmp_path: Path
) -> None:
    """Workers (or the forkserver) import the main module, which here starts a pool: each stops
    there, quietly, and the script gets one error that says what to write, not multiprocessing's
    "bootstrapping phase" errors from every child and a crash of unknown cause. The same for a
    module run with ``python -m``, which the forkserver imports by name."""
    with _start_unguarded(mode, start_method, tmp_path, run_as) as script:
        try:
            stdout, stderr = script.communicate(timeout=30)
        finally:
            script.kill()  # a no-op once it has exited
    assert len(list(tmp_path.iterdir())) >= 2  # the script, and what imported it as the main module
    assert not _left_behind(tmp_path, 5)
    assert "bootstrapping phase" not in stderr, stderr
    if mode == "error":
        assert script.returncode == 1, stderr
        assert stderr.count("Traceback") == 1, stderr
        error = stderr[stderr.rindex("RuntimeError: ") :]
    else:
        assert script.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        error = stdout
    assert "starts a pool when it is imported" in error, stderr
    assert str(SCRIPTS / "unguarded_pool.py") in error
    assert GUARD in error


@pytest.mark.parametrize(
    ("signum", "start_method", "run_as"),
    [
        pytest.param(
            signum,
            start_method,
            "script",
            id=f"{signum.name}-{start_method}",
            marks=pytest.mark.skip(
                reason="the owner waits, in a thread it cannot interrupt, for the forkserver's answer, "
                "which comes once the forkserver's import of the main module is over; a Ctrl-C from "
                "a terminal interrupts that import too"
            )
            if (signum, start_method) == (signal.SIGINT, "forkserver")
            else (),
        )
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL)
        for start_method in UNGUARDED
    ]
    + [pytest.param(signal.SIGKILL, "forkserver", "python-m", id="SIGKILL-forkserver-python-m")],
)
@pytest.mark.timeout(60)
def test_a_script_without_the_main_guard_stopped_while_its_workers_import_it_leaves_no_process(
    signum: signal.Signals, start_method: str, run_as: str, tmp_path: Path
) -> None:
    """Stopped while the processes it started are still importing it as the main module (before
    any worker code runs), the script leaves none of them behind: they die with their owner, the
    workers by their lifeline, armed by the owner as it starts them, a forkserver by the kernel's
    parent-death signal while it imports the main module."""
    importing = 1 if start_method == "forkserver" else 2  # the forkserver, or the workers
    with _start_unguarded("stuck", start_method, tmp_path, run_as) as script:
        try:
            deadline = time.monotonic() + 20
            while len(list(tmp_path.iterdir())) < 1 + importing:
                assert script.poll() is None, script.communicate()
                assert time.monotonic() < deadline, "the main module was never imported"
                time.sleep(0.02)
            script.send_signal(signum)
            _, stderr = script.communicate(timeout=20)
        finally:
            script.kill()
    assert not _left_behind(tmp_path, 5), stderr


@pytest.mark.timeout(60)
def test_a_main_module_that_fails_in_the_forkserver_gets_an_error_that_says_so() -> None:
    """A script that raises when imported as the main module (not as a script) kills the
    forkserver as it preloads it: the pool's start says that, where the script is, and what to do,
    rather than that a worker was lost; the forkserver's traceback is on stderr."""
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "failing_main.py")], capture_output=True, text=True, env=script_env(), timeout=50
    )
    assert done.returncode == 3, done.stderr
    assert "forkserver" in done.stdout, done.stdout
    assert "exited (code 1)" in done.stdout
    assert str(SCRIPTS / "failing_main.py") in done.stdout
    assert GUARD in done.stdout
    assert "ValueError: failing_main.py runs only as a script" in done.stderr


# -- shared memory and semaphores -----------------------------------------------------------------


def _dev_shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.mark.anyio
async def test_crashes_leave_nothing_in_dev_shm(tmp_path: Path) -> None:
    """procpool's pools and IPC objects keep their shared state in anonymous memory (memfd) and
    pipes, never in named segments or POSIX semaphores: crashes leave nothing in /dev/shm."""
    before = _dev_shm()
    async with procpool.Pool(2, kill_grace=0.1) as pool:
        queue: procpool.Queue[int] = procpool.Queue(4)
        lock, semaphore, event = procpool.Lock(), procpool.Semaphore(2), procpool.Event()
        barrier, condition = procpool.Barrier(2), procpool.Condition()
        for fn in (workfns.kill_self, workfns.segfault):
            with pytest.raises(procpool.WorkerCrashedError):
                await pool.run(fn)
        with anyio.move_on_after(0.2):
            await pool.run(workfns.sleep_and_return, 30)  # cancelled: its worker is killed
        process = procpool.Process(target=workfns.sleep_and_return, args=(30,))
        await process.start()
        process.kill()
        await process.join()
        assert process.exitcode == -signal.SIGKILL
        await queue.put(1)
        assert await queue.get() == 1
        queue.close()
        del lock, semaphore, event, barrier, condition
    gc.collect()  # the synchronisation objects close their pipes when collected
    appeared = _dev_shm() - before
    if appeared:  # tests running beside this one may create entries for a moment; a leak stays
        await anyio.sleep(0.5)
    assert appeared & _dev_shm() == set()


# -- where the pool is created -------------------------------------------------------------------


@pytest.mark.anyio
async def test_pool_created_after_threads_exist() -> None:
    """Threads that hold locks while the pool starts do not matter: workers are started by the
    forkserver (or spawned), never forked from this threaded process."""
    import threading

    stop = threading.Event()
    held = threading.Lock()

    def busy() -> None:
        with held if not held.locked() else threading.Lock():
            while not stop.is_set():
                sum(range(1000))

    threads = [threading.Thread(target=busy) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        async with procpool.Pool(2) as pool:
            assert await pool.map(workfns.square, range(20)) == [i * i for i in range(20)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()


@pytest.mark.parametrize(
    ("backend", "options"),
    [("asyncio", {}), ("asyncio", {"use_uvloop": True}), ("trio", {})],
    ids=["asyncio", "uvloop", "trio"],
)
def test_pool_on_a_loop_in_a_non_main_thread(backend: str, options: dict[str, object]) -> None:
    """An event loop run by another thread (signal handlers cannot be installed there) runs a pool,
    cancels a running task (killing its worker), and stops every worker on exit."""
    import threading

    outcome: list[object] = []

    async def use_pool() -> None:
        async with procpool.Pool(2) as pool:
            squares = await pool.map(workfns.square, range(10))
            with anyio.move_on_after(0.2):
                await pool.run(workfns.sleep_and_return, 30)
            square = await pool.run(workfns.square, 3)
            # The killed worker's replacement may still be starting (slowly, on a busy machine).
            with anyio.move_on_after(10):
                while pool.stats().alive != 2:
                    await anyio.sleep(0.01)
            outcome.append((squares, square, pool.stats().alive))

    def thread_main() -> None:
        try:
            anyio.run(use_pool, backend=backend, backend_options=options)
        except BaseException as exc:  # reported to the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=thread_main)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert outcome == [([i * i for i in range(10)], 9, 2)]
    assert not _workers()


# -- under a multi-process server ------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.timeout(90)
def test_pool_in_each_uvicorn_worker_process(tmp_path: Path) -> None:
    """``uvicorn --workers 2``: each web process runs the example app's pool; requests are served
    by both, and SIGTERM to the supervisor leaves no process behind."""
    import httpx

    port = _free_port()
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(TESTS.parent / "examples")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    env = {**script_env(), "POOL_WORKERS": "1"}
    with log_path.open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    processes: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while log_path.read_text().count("Application startup complete") < 2:
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        processes = psutil.Process(server.pid).children(recursive=True)
        pool_pids = set()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for i in range(40):  # new connections: the kernel spreads them over both web processes
                response = client.get("/digest", params={"data": str(i), "cost": 1}, headers={"Connection": "close"})
                assert response.status_code == 200, response.text
                pool_pids.add(response.json()["pid"])
                if len(pool_pids) == 2:
                    break
            assert client.get("/health").json()["status"] == "ok"
        assert len(pool_pids) == 2, "every request went to the same web process"
        processes += psutil.Process(server.pid).children(recursive=True)
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) in (0, -signal.SIGTERM), log_path.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    survivors = _gone_within([p.pid for p in processes], 5)
    assert not survivors, f"left running after shutdown: {_describe(survivors)}"
    assert "Traceback" not in log_path.read_text(), log_path.read_text()
    assert log_path.read_text().count("Application shutdown complete") == 2
