"""What is particular to `procpool.DaskPool`: where it connects, what it cannot do (stop a running
task, run under trio), worker loss, its optional dependency, and the scale-out example.

The shared behaviour (run, submit, map, errors, cancelling queued tasks...) is in test_backends.py.
Most tests here use the cluster of the ``dask_scheduler_address`` fixture; Dask's client runs on
asyncio, so they run under asyncio only, except the one that checks the error under trio.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import distributed
import pytest

import procpool
import workfns

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "scale_out.py"

asyncio_only = pytest.mark.parametrize("anyio_backend", [pytest.param(("asyncio", {}), id="asyncio")])


async def _wait_for_file(path: Path, timeout: float = 10) -> str:
    with anyio.fail_after(timeout):
        while not path.exists() or not path.read_text():
            await anyio.sleep(0.01)
    return path.read_text()


# -- where it connects ---------------------------------------------------------------------------


class _ClusterLike:
    """Stands for any Dask cluster object (dask-jobqueue, dask-kubernetes...): it has a scheduler_address."""

    def __init__(self, address: str) -> None:
        self._address = address

    @property
    def scheduler_address(self) -> str:
        return self._address


@pytest.mark.anyio
@asyncio_only
async def test_connects_through_an_address_a_cluster_or_a_client_it_does_not_own(dask_scheduler_address: str) -> None:
    async with distributed.Client(dask_scheduler_address, asynchronous=True) as client:
        for target in (dask_scheduler_address, _ClusterLike(dask_scheduler_address), client):
            async with procpool.DaskPool(target) as pool:
                assert pool.workers == 2
                assert await pool.run(workfns.square, 4) == 16
                assert procpool.DaskPool.__name__ in repr(pool)
        # The pool's own client is gone; the one it was given is still usable.
        assert client.status == "running"
        assert await client.submit(workfns.square, 5) == 25


@pytest.mark.anyio
@asyncio_only
async def test_its_client_is_not_made_the_default_client(dask_scheduler_address: str) -> None:
    async with procpool.DaskPool(dask_scheduler_address) as pool:
        await pool.run(workfns.square, 1)
        with pytest.raises(ValueError, match="No clients found"):
            distributed.default_client()


@pytest.mark.anyio
@asyncio_only
async def test_without_an_address_it_runs_its_own_local_cluster_and_stops_it() -> None:
    """The leak check (conftest) then finds none of that cluster's processes or sockets left."""
    async with procpool.DaskPool(workers=1) as pool:
        assert pool.workers == 1
        pid = await pool.run(workfns.getpid)
        assert pid != os.getpid()
        assert await pool.run(workfns.getpid) == pid


@pytest.mark.anyio
@asyncio_only
async def test_connecting_to_an_unreachable_scheduler_can_be_timed_out() -> None:
    """Dask retries for its connect timeout (30 s); the caller's own timeout ends it cleanly."""
    pool = procpool.DaskPool("tcp://127.0.0.1:1")
    with pytest.raises(TimeoutError), anyio.fail_after(0.5):
        async with pool:
            pass
    with pytest.raises(procpool.PoolClosedError):
        pool.submit(workfns.square, 1)


def test_bad_arguments_are_refused_at_construction() -> None:
    with pytest.raises(TypeError, match="scheduler address"):
        procpool.DaskPool(8786)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers sizes only the LocalCluster"):
        procpool.DaskPool("tcp://127.0.0.1:8786", workers=2)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        procpool.DaskPool(workers=0)


# -- what differs from the local pool -----------------------------------------------------------


@pytest.mark.anyio
@asyncio_only
async def test_a_cancelled_running_task_finishes_on_its_worker(dask_scheduler_address: str, tmp_path: Path) -> None:
    marker = tmp_path / "running"
    async with procpool.DaskPool(dask_scheduler_address) as pool:
        task = pool.submit(workfns.touch_after, str(marker), 0.5)
        await _wait_for_file(marker)
        assert task.cancel()
        with anyio.fail_after(0.2), pytest.raises(procpool.TaskCancelledError):
            await task  # at once: the pool stops waiting, the worker goes on
        assert "done" not in marker.read_text()
        with anyio.fail_after(5):
            while not marker.read_text().endswith("done"):
                await anyio.sleep(0.02)


@pytest.mark.anyio
@asyncio_only
async def test_a_task_cancelled_before_its_driver_starts_never_reaches_the_cluster(
    dask_scheduler_address: str, tmp_path: Path
) -> None:
    """Cancelled in the same step as its submit, before the pool's driver task for it has run:
    it must not be sent to Dask, whose worker would run it (and the pool's exit wait for it)."""
    marker = tmp_path / "ran"
    async with procpool.DaskPool(dask_scheduler_address) as pool:
        task = pool.submit(workfns.touch_after, str(marker), 0)
        assert task.cancel()
        with pytest.raises(procpool.TaskCancelledError):
            await task
        assert await pool.run(workfns.square, 2) == 4  # the cluster has run what it was sent
    assert not marker.exists()


@pytest.mark.anyio
@asyncio_only
async def test_options_allow_only_letting_running_tasks_finish(dask_scheduler_address: str) -> None:
    async with procpool.DaskPool(dask_scheduler_address) as pool:
        assert await pool.options(kill_on_cancel=False).run(workfns.square, 3) == 9
        with pytest.raises(ValueError, match="cannot kill a running task"):
            pool.options(kill_on_cancel=True)
        with pytest.raises(ValueError, match="no timeout or retries"):
            pool.options(kill_on_cancel=False, timeout=1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="no timeout or retries"):
            pool.options(kill_on_cancel=False, retries=2)


@pytest.mark.anyio
@asyncio_only
async def test_a_lost_worker_fails_its_task_with_worker_crashed_error(dask_scheduler_address: str) -> None:
    """The test cluster gives up after one lost worker (allowed-failures=0); by default Dask would
    retry the task on 3 more workers, killing each, before raising KilledWorker."""
    async with procpool.DaskPool(dask_scheduler_address) as pool:
        with pytest.raises(procpool.WorkerCrashedError, match="died while running kill_self") as info:
            await pool.run(workfns.kill_self)
        assert isinstance(info.value.__cause__, distributed.KilledWorker)
        assert info.value.pid is not None
        assert await pool.run(workfns.square, 3) == 9
    # The nanny restarts the lost worker: wait for it, so later tests find the whole cluster.
    async with distributed.Client(dask_scheduler_address, asynchronous=True) as client:
        await client.wait_for_workers(2, timeout=30)


@pytest.mark.anyio
@asyncio_only
async def test_stream_says_it_is_not_available(dask_scheduler_address: str) -> None:
    async with procpool.DaskPool(dask_scheduler_address) as pool:
        with pytest.raises(NotImplementedError, match="cannot stream"):
            pool.stream(range, 3)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [pytest.param(("trio", {}), id="trio")])
async def test_under_trio_it_says_dask_needs_asyncio() -> None:
    pool = procpool.DaskPool("tcp://127.0.0.1:8786")
    with pytest.raises(RuntimeError, match="needs an asyncio event loop"):
        async with pool:
            pass


# -- the optional dependency ---------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)


def test_importing_procpool_does_not_import_dask() -> None:
    done = _python(
        "import sys, procpool; print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


def test_without_dask_the_error_says_what_to_install() -> None:
    done = _python(
        "import sys; sys.modules['distributed'] = None\n"  # what an environment without it looks like
        "import procpool\n"
        "try:\n"
        "    procpool.DaskPool()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'procpool[dask]'" in done.stdout


# -- the example ---------------------------------------------------------------------------------


def _run_example(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_scale_out_example_runs_locally() -> None:
    done = _run_example()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "procpool.Pool" in done.stdout
    assert "all results correct" in done.stdout


def test_scale_out_example_runs_on_a_dask_cluster(dask_scheduler_address: str) -> None:
    done = _run_example("--dask", dask_scheduler_address)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"procpool.DaskPool {dask_scheduler_address}" in done.stdout
    assert "all results correct" in done.stdout
