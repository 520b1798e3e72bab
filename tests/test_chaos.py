"""Chaos: workers are SIGKILLed every few milliseconds while 1,500 tasks run. Every task must end
with its own result or `WorkerCrashedError` (with ``retries``: with its own result), nothing may
hang, and the pool must end healthy."""

from __future__ import annotations

import os
import random
import signal

import anyio
import psutil
import pytest

import procpool
import workfns

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

TASKS = 1_500
# About a millisecond of CPU per task: far above the 50 µs under which a worker holds results back
# to send them together, which a kill would lose with it (see docs/reliability.md), so a kill
# fails at most the one task its worker was running.
SPINS = 40_000


def _worker_pids() -> list[int]:
    """Worker processes (spares and starting ones included): the forkserver's children."""
    me = os.getpid()
    pids = []
    for child in psutil.Process(me).children(recursive=True):
        try:
            if child.ppid() != me:
                pids.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


async def _run_under_fire(pool: procpool.Pool | procpool.PoolOptions, seed: int) -> tuple[list[object], int]:
    """Run `TASKS` tasks while a killer SIGKILLs a random worker every 2-10 ms; the tasks' outcomes
    (result or exception) and the number of kills.

    The killer waits for one task to succeed between two kills. On an idle machine that never holds
    it back (a task succeeds every few ms), but on a loaded one, where a worker takes longer to start
    than the killer takes to strike again, a fixed kill rate would keep the pool from ever running a
    task: the test would measure the machine's load, not whether anything is lost."""
    rng = random.Random(seed)
    kills = 0
    succeeded = 0
    tasks = [pool.submit(workfns.echo_after_spin, i, SPINS) for i in range(TASKS)]

    async def killer() -> None:
        nonlocal kills
        succeeded_at_last_kill = -1
        while True:
            await anyio.sleep(rng.uniform(0.002, 0.01))
            pids = _worker_pids()
            if pids and succeeded > succeeded_at_last_kill:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills += 1
                    succeeded_at_last_kill = succeeded
                except ProcessLookupError:
                    pass

    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            tg.start_soon(killer)
            async for task in procpool.as_completed(tasks):
                if task.exception() is None:
                    succeeded += 1
            tg.cancel_scope.cancel()  # no kill may land on the health check
    outcomes: list[object] = []
    for task in tasks:
        error = task.exception()
        outcomes.append(task.result() if error is None else error)
    return outcomes, kills


async def test_random_sigkills_fail_only_the_running_tasks() -> None:
    async with procpool.Pool(2) as pool:
        outcomes, kills = await _run_under_fire(pool, 1234)
        crashed = 0
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, procpool.WorkerCrashedError), repr(outcome)
                crashed += 1
            else:
                assert outcome == index  # never another task's result
        assert kills > 100
        assert crashed <= kills
        print(f"chaos: {TASKS} tasks, {kills} kills, {crashed} crashed, 0 lost")
        assert await pool.map(workfns.square, range(50)) == [i * i for i in range(50)]  # healthy afterwards


# One event loop is enough here: the loop-specific paths are the same as in the test above.
@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])
async def test_random_sigkills_with_retries_lose_nothing() -> None:
    async with procpool.Pool(2, max_crashes_per_task=1000) as pool:
        outcomes, kills = await _run_under_fire(pool.options(retries=1000), 4321)
        assert outcomes == list(range(TASKS))  # every task succeeded, each with its own result
        assert kills > 100
        print(f"chaos with retries: {TASKS} tasks, {kills} kills, 0 lost")
        assert await pool.map(workfns.square, range(50)) == [i * i for i in range(50)]
