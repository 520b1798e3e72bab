"""``procpool.run_sync`` and the default pool: one per event loop, closed with the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import anyio
import psutil
import pytest

import procpool
import workfns


@pytest.fixture(autouse=True)
def _default_settings() -> Iterator[None]:
    procpool.configure_default_pool()
    yield
    procpool.configure_default_pool()


@pytest.mark.anyio
async def test_run_sync_uses_one_pool_per_loop() -> None:
    assert await procpool.run_sync(workfns.square, 7) == 49
    assert await procpool.run_sync(lambda: "lambda") == "lambda"
    first = await procpool.default_pool()
    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(procpool.run_sync, workfns.square, i)
    assert await procpool.default_pool() is first


@pytest.mark.anyio
async def test_concurrent_first_calls_share_one_pool() -> None:
    pools: list[procpool.Pool] = []

    async def get() -> None:
        pools.append(await procpool.default_pool())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(get)
    assert len({id(pool) for pool in pools}) == 1


def _worker_pids() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def test_each_asyncio_run_gets_its_own_pool_and_closes_it() -> None:
    seen = []
    for _ in range(2):
        before = _worker_pids()

        async def main() -> tuple[int, int]:
            pool = await procpool.default_pool()
            return id(pool), await procpool.run_sync(workfns.getpid)

        pool_id, worker = asyncio.run(main())
        seen.append(pool_id)
        assert worker not in before
        # asyncio.run cancelled the pool's host task, which stopped the workers before returning.
        assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
    assert len(seen) == 2


def test_configure_default_pool_sets_size_and_options() -> None:
    procpool.configure_default_pool(1, max_tasks_per_worker=1)

    async def main() -> tuple[int, set[int]]:
        pool = await procpool.default_pool()
        return pool.workers, {await procpool.run_sync(workfns.getpid) for _ in range(3)}

    workers, pids = anyio.run(main)
    assert workers == 1
    assert len(pids) == 3  # recycled after every task
    with pytest.raises(ValueError, match="workers"):
        procpool.configure_default_pool(0)


def test_configure_default_pool_refuses_bad_options_at_the_call_and_keeps_the_settings_it_had() -> None:
    procpool.configure_default_pool(1)
    with pytest.raises(TypeError, match=r"'bogus_option'.*initializer, initargs, max_tasks_per_worker") as unknown:
        procpool.configure_default_pool(bogus_option=True)
    assert "Pool.__init__" not in str(unknown.value)  # the user called configure_default_pool
    with pytest.raises(ValueError, match="kill_grace"):
        procpool.configure_default_pool(kill_grace=-1)
    with pytest.raises(TypeError, match="initializer must be callable"):
        procpool.configure_default_pool(initializer=3)
    with pytest.raises(ValueError, match="fork"):
        procpool.configure_default_pool(start_method="fork")

    async def size() -> int:
        return (await procpool.default_pool()).workers

    assert anyio.run(size) == 1


def test_workers_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async def size() -> int:
        return (await procpool.default_pool()).workers

    monkeypatch.setenv("PROCPOOL_WORKERS", "1")
    assert anyio.run(size) == 1
    monkeypatch.setenv("PROCPOOL_WORKERS", "many")
    with pytest.raises(ValueError, match="PROCPOOL_WORKERS"):
        anyio.run(size)


def test_failed_start_is_raised_and_retried() -> None:
    procpool.configure_default_pool(1, initializer=workfns.fail_initializer)

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(procpool.InitializerError):
                await procpool.run_sync(workfns.square, 2)
        procpool.configure_default_pool(1)
        assert await procpool.run_sync(workfns.square, 2) == 4

    anyio.run(main)
