"""procpool.Manager: shared dicts and lists, awaited in the parent, plain in children."""

from __future__ import annotations

import contextlib
import os

import anyio
import psutil
import pytest

import procpool
import workfns
from ipc_support import no_thread_left  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.anyio


async def test_dict_and_list_shared_with_two_children_and_pool_tasks() -> None:
    with anyio.fail_after(30):
        async with procpool.Manager() as manager:
            scores = await manager.dict({"start": 0})
            log = await manager.list(["start"])
            async with (
                procpool.Process(workfns.ipc_shared_writes, (scores, log, 5)),
                procpool.Process(workfns.ipc_shared_writes, (scores, log, 5)),
            ):
                pass
            async with procpool.Pool(2) as pool:
                # Submitted together, so that each worker runs one (one after another, both would
                # go to the same worker: the most recently used).
                tasks = [pool.submit(workfns.ipc_shared_writes, scores, log, 2) for _ in range(2)]
                assert len({await task for task in tasks}) == 2
            assert await scores.len() == 1 + 10 + 4
            assert await log.len() == 1 + 10 + 4
            assert await scores.get("start") == 0
            assert await log.get(0) == "start"
            assert sorted(await scores.values()) == sorted([0] + [0, 1, 2, 3, 4] * 2 + [0, 1] * 2)


async def test_parent_operations() -> None:
    async with procpool.Manager() as manager:
        d = await manager.dict(a=1)
        await d.set("b", 2)
        assert await d.get("b") == 2
        assert await d.get("missing", "default") == "default"
        assert await d.contains("a")
        assert await d.setdefault("c", 3) == 3
        await d.update({"d": 4}, e=5)
        assert sorted(await d.keys()) == ["a", "b", "c", "d", "e"]
        assert sorted(await d.values()) == [1, 2, 3, 4, 5]
        assert ("a", 1) in await d.items()
        assert await d.pop("e") == 5
        assert await d.pop("e", None) is None
        await d.delete("d")
        with pytest.raises(KeyError):
            await d.delete("d")
        assert await d.copy() == {"a": 1, "b": 2, "c": 3}
        await d.clear()
        assert await d.len() == 0

        items = await manager.list([3, 1])
        await items.append(2)
        await items.extend([5, 4])
        await items.insert(0, 0)
        await items.set(1, 30)
        assert await items.copy() == [0, 30, 1, 2, 5, 4]
        assert await items.get(slice(1, 3)) == [30, 1]
        assert (await items.index(2), await items.count(5)) == (3, 1)
        assert await items.pop() == 4
        await items.remove(30)
        await items.delete(0)
        assert await items.copy() == [1, 2, 5]
        with pytest.raises(IndexError):
            await items.get(10)


async def test_concurrent_increments_under_a_lock() -> None:
    lock = procpool.Lock()
    async with procpool.Manager() as manager:
        counter = await manager.dict()
        async with (
            procpool.Process(workfns.ipc_increment, (counter, lock, "n", 20)),
            procpool.Process(workfns.ipc_increment, (counter, lock, "n", 20)),
        ):
            for _ in range(20):
                async with lock:
                    await counter.set("n", await counter.get("n", 0) + 1)
        assert await counter.get("n") == 60


async def test_the_manager_process_stops_on_exit_and_refuses_use_after() -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    async with procpool.Manager() as manager:
        shared = await manager.dict()
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        assert started  # the manager process
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(procpool.InvalidStateError, match="not running"):
        await shared.get("x")
    with pytest.raises(procpool.InvalidStateError):
        await manager.start()


async def test_cancelled_call_leaves_the_connection_usable() -> None:
    async with procpool.Manager() as manager:
        d = await manager.dict()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await d.set("k", 1)
        assert await d.get("k") in (None, 1)  # the next call gets its own answer
        await d.set("k", 2)
        assert await d.get("k") == 2


def _pipes() -> set[str]:
    targets = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            targets.add(os.readlink(f"/proc/self/fd/{name}"))
    return {target for target in targets if target.startswith("pipe:")}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="lists descriptors in /proc")
async def test_closing_releases_the_manager_process_descriptors_while_the_manager_is_still_referenced() -> None:
    # Whoever still holds the manager (a traceback's frame, a thread's locals) must not keep its
    # process's pipes open after aclose.
    before = _pipes()
    manager = procpool.Manager()
    async with manager:
        d = await manager.dict()
        await d.set("k", 1)
    assert _pipes() <= before
