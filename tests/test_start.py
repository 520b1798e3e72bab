"""A fast start: ``import procpool`` loads nothing it does not need, a worker only the child side,
and the forkserver imports the main module once for every worker it forks (docs/tuning.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import bare_fns
import procpool
from script_env import script_env

pytestmark = pytest.mark.anyio
SCRIPTS = Path(__file__).resolve().parent / "scripts"
MACHINERY = ("procpool._api", "procpool._core", "procpool._engine", "procpool._ipc", "procpool._dask", "anyio")


def _modules_after(code: str) -> list[str]:
    """The procpool, anyio, asyncio and cloudpickle modules a fresh interpreter has after ``code``."""
    prefixes = ("procpool", "anyio", "asyncio", "cloudpickle")
    report = f"import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}; {report}"], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_import_procpool_loads_none_of_the_pool_machinery() -> None:
    assert _modules_after("import procpool") == ["procpool", "procpool._forkserver", "procpool._lazy"]


def test_a_public_name_loads_what_it_needs_on_first_use() -> None:
    loaded = _modules_after("import procpool; procpool.WorkerCrashedError")
    assert "procpool._errors" in loaded
    assert not [name for name in loaded if name.startswith(MACHINERY)]
    assert "procpool._engine" in _modules_after("import procpool; procpool.Pool(1)")


# Prints the command lines of its children after creating a pool, then after multiprocessing starts
# its resource tracker; each once the children have run their own program (multiprocessing does
# not wait for that: until then a child has no command line, or this one's).
_CHILDREN_OF_A_NEW_POOL = """
import time, psutil, procpool
from multiprocessing import resource_tracker

def report_children():
    me = psutil.Process()
    deadline = time.monotonic() + 10
    while True:
        lines = [" ".join(child.cmdline()) for child in me.children()]
        if all(line and line != " ".join(me.cmdline()) for line in lines) or time.monotonic() > deadline:
            print(lines)
            return
        time.sleep(0.01)

pool = procpool.Pool(1)
report_children()
resource_tracker.ensure_running()
report_children()
"""


def test_the_pool_class_loads_no_engine_and_a_new_pool_starts_the_forkserver_first() -> None:
    """So the forkserver starts beside the engine's import, not after it (docs/tuning.md)."""
    loaded = _modules_after("from procpool import Pool")
    assert "procpool._api" in loaded
    assert [name for name in loaded if name.startswith(("procpool._engine", "procpool._core", "anyio"))] == []
    done = subprocess.run(
        [sys.executable, "-c", _CHILDREN_OF_A_NEW_POOL], capture_output=True, text=True, timeout=60, check=True
    )
    created, later = done.stdout.splitlines()
    assert "multiprocessing.forkserver" in created
    # multiprocessing's resource tracker waits for the first worker's start (whose CPU time it
    # would take from the forkserver's start), and multiprocessing starts it as ever afterwards.
    assert "multiprocessing.resource_tracker" not in created
    assert "multiprocessing.resource_tracker" in later


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in procpool.__all__:
        assert getattr(procpool, name).__name__ == name
    assert set(procpool.__all__) <= set(dir(procpool))
    with pytest.raises(AttributeError, match="no attribute 'Poool'"):
        procpool.Poool  # noqa: B018


@pytest.mark.timeout(60)
async def test_a_worker_carries_only_the_child_side() -> None:
    """Nor does it import asyncio for a task that returns no coroutine (its main module, here,
    imports none: the forkserver preloads none)."""
    async with procpool.Pool(1) as pool:
        loaded = await pool.run(bare_fns.loaded_modules, "procpool", "anyio", "asyncio")
    assert "procpool._child" in loaded
    assert [name for name in loaded if name.startswith((*MACHINERY, "asyncio"))] == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "run_as", [[str(SCRIPTS / "main_imports.py")], ["-m", "scripts.main_imports"]], ids=["script", "python-m"]
)
def test_the_forkserver_imports_the_main_module_for_every_worker(run_as: list[str], tmp_path: Path) -> None:
    """The workers of a script (or of a module run with ``python -m``), of two pools one after
    the other, come from a forkserver that imported it as the main module once; none imports it
    again (on every Python: older ones hand the forkserver a script's path under a key they do not
    read, and multiprocessing has each worker import a module run by name)."""
    env = script_env() | {"MAIN_IMPORTS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, *run_as], capture_output=True, text=True, env=env, timeout=50)
    assert done.returncode == 0, done.stderr
    pids = json.loads(done.stdout)
    assert len(set(pids["workers"])) == 4
    importers = {int(path.name) for path in tmp_path.iterdir()}
    assert pids["script"] in importers
    assert len(importers) == 2  # the script and the forkserver
    assert not importers & set(pids["workers"])


@pytest.mark.timeout(60)
def test_a_process_forked_after_a_pool_starts_pools_of_its_own() -> None:
    """As a pre-forking server's workers, forked once the app used a pool: the forked process's
    pool comes from a forkserver of its own, which ends with it, and the parent's keeps serving."""
    script = str(SCRIPTS / "forked_after_pool.py")
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, env=script_env(), timeout=50)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["forked"] == {"answer": 49, "forkserver": report["forked"]["forkserver"]}, report["forked"]
    assert report["before"]["answer"] == report["after"]["answer"] == 49
    assert report["after"]["forkserver"] == report["before"]["forkserver"]
    assert report["forked"]["forkserver"] != report["before"]["forkserver"]
    assert report["forked_forkserver_ended"]


@pytest.mark.timeout(60)
def test_a_pool_created_where_the_forkserver_cannot_start_yet_opens_once_it_can() -> None:
    """The forkserver's early start is only a head start: out of descriptors, creating the pool
    still succeeds, and opening it later starts the forkserver as usual."""
    code = (
        "import os, resource, anyio, procpool, workfns\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir('/proc/self/fd')) + 1, hard))\n"
        "pool = procpool.Pool(1)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))\n"
        "async def main():\n"
        "    async with pool:\n"
        "        print(await pool.run(workfns.square, 7))\n"
        "if __name__ == '__main__':\n"
        "    anyio.run(main)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=script_env(), timeout=50)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["49"]


@pytest.mark.timeout(60)
def test_a_pool_created_in_a_thread_that_ends_first_still_opens() -> None:
    """The forkserver, while it imports the main module, dies with the thread that started it:
    a pool created in a short-lived thread leaves the forkserver's start to the pool's opening."""
    script = str(SCRIPTS / "pool_from_a_thread.py")
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, env=script_env(), timeout=50)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["49"]


@pytest.mark.timeout(60)
async def test_a_worker_importing_a_module_that_creates_a_pool_starts_no_forkserver() -> None:
    import pool_at_import

    async with procpool.Pool(1) as pool:
        started = await pool.run(pool_at_import.children)
    assert [line for line in started if "forkserver" in line] == []


@pytest.mark.timeout(60)
def test_a_process_forked_while_a_worker_starts_starts_pools_of_its_own() -> None:
    """The fork comes while another thread of the parent starts a worker, holding the lock that
    serialises starts, which no thread of the forked process would ever release: it hung."""
    script = str(SCRIPTS / "forked_while_starting.py")
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, env=script_env(), timeout=50)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"forked": 49, "parent": 49}


@pytest.mark.timeout(60)
def test_multiprocessing_still_removes_what_a_worker_left_in_shared_memory() -> None:
    """`Pool(...)` starts the forkserver without multiprocessing's resource tracker, which would
    take CPU time from it; the first worker's start starts the tracker, and it does its job."""
    script = str(SCRIPTS / "leaked_shared_memory.py")
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, env=script_env(), timeout=50)
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip().lstrip("/")
    assert name
    assert not Path("/dev/shm", name).exists()
    assert "leaked shared_memory" in done.stderr  # the tracker's own warning, as it removed it
