"""procpool.Process: started, joined and stopped without blocking the loop; dies with its owner."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import psutil
import pytest

import procpool
import workfns
from ipc_support import no_thread_left  # noqa: F401 (autouse fixture)
from script_env import script_env

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).resolve().parent


async def test_start_join_and_exit_codes_of_two_children() -> None:
    q: procpool.Queue[int] = procpool.Queue()
    ok = procpool.Process(workfns.ipc_put_range, (q, 0, 1), name="putter")
    failing = procpool.Process(workfns.raise_value_error, ("boom",))
    assert (ok.pid, ok.exitcode, ok.is_alive()) == (None, None, False)
    await ok.start()
    await failing.start()
    assert ok.name == "putter"
    assert ok.pid is not None
    assert ok.pid != os.getpid()
    with anyio.fail_after(20):
        assert await q.get() == 0
        await ok.join()
        await failing.join()
    assert (ok.exitcode, failing.exitcode, ok.is_alive()) == (0, 1, False)
    with pytest.raises(procpool.InvalidStateError):
        await ok.start()


async def test_terminate_kill_and_join_timeout() -> None:
    sleepers = [procpool.Process(time.sleep, (30,)) for _ in range(2)]
    for sleeper in sleepers:
        await sleeper.start()
    await sleepers[0].join(timeout=0.05)
    assert sleepers[0].is_alive()
    assert sleepers[0].exitcode is None
    sleepers[0].terminate()
    sleepers[1].kill()
    with anyio.fail_after(10):
        for sleeper in sleepers:
            await sleeper.join()
    assert [s.exitcode for s in sleepers] == [-signal.SIGTERM, -signal.SIGKILL]
    sleepers[0].terminate()  # exited: nothing to do


async def test_concurrent_joins_all_return() -> None:
    child = procpool.Process(time.sleep, (0.2,))
    await child.start()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(child.join)
    assert child.exitcode == 0


async def test_async_with_joins_on_exit_and_stops_on_error_or_cancellation() -> None:
    async with procpool.Process(lambda: None) as quick:  # a lambda: the target travels by cloudpickle
        pass
    assert quick.exitcode == 0

    class Leave(Exception):
        pass

    with pytest.raises(Leave):
        async with procpool.Process(time.sleep, (30,)) as stopped:
            raise Leave
    assert stopped.exitcode == -signal.SIGTERM

    with anyio.move_on_after(0.2):
        async with procpool.Process(time.sleep, (30,)) as cancelled:
            pass  # the join on exit is cancelled: the child is stopped
    assert cancelled.exitcode == -signal.SIGTERM


async def test_async_target_runs_on_the_childs_own_loop() -> None:
    q: procpool.Queue[int] = procpool.Queue()
    async with procpool.Process(workfns.async_square, (7,)) as child:
        pass
    assert child.exitcode == 0

    async def put_async(queue: procpool.Queue[int]) -> None:
        await queue.put(42)  # awaitable there too: the child runs it under an event loop

    async with procpool.Process(put_async, (q,)):
        with anyio.fail_after(20):
            assert await q.get() == 42


async def test_misuse_is_refused_clearly() -> None:
    with pytest.raises(TypeError, match="callable"):
        procpool.Process(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fork"):
        procpool.Process(abs, start_method="fork")
    child = procpool.Process(abs, (1,))
    with pytest.raises(procpool.InvalidStateError, match="start"):
        await child.join()
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(child)
    with pytest.raises(procpool.SerializationError):
        await procpool.Process(abs, (_unpicklable(),)).start()


def _unpicklable() -> object:
    return threading.Lock()


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_children_and_manager_die_with_their_owner(start_method: str, tmp_path: Path) -> None:
    """SIGKILL gives the owner no chance to clean up: the lifeline must end its children."""
    env = script_env()
    stdout_path = tmp_path / "stdout"
    with stdout_path.open("w") as stdout:
        script = subprocess.Popen(
            [sys.executable, str(TESTS / "scripts" / "ipc_owner.py"), start_method],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
        )
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 30
        while not stdout_path.read_text().startswith("children "):
            assert script.poll() is None, script.stderr.read() if script.stderr else ""
            assert time.monotonic() < deadline, "the script never reported its children"
            time.sleep(0.01)
        child_pids = {int(pid) for pid in stdout_path.read_text().split()[1:3]}
        descendants = psutil.Process(script.pid).children(recursive=True)
        assert child_pids <= {p.pid for p in descendants}
        assert len(descendants) >= 3  # the two children and the manager (and the forkserver)
        script.send_signal(signal.SIGKILL)
        assert script.wait(5) == -signal.SIGKILL
        killed_at = time.monotonic()
        while (alive := [p for p in descendants if _alive(p)]) and time.monotonic() < killed_at + 3:
            time.sleep(0.01)
        assert not alive, f"alive 3 s after their owner was SIGKILLed: {[p.pid for p in alive]}"
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
        if script.stderr is not None:
            script.stderr.close()
        for process in descendants:
            if _alive(process):
                process.kill()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
