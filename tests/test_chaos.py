"""Chaos: workers are SIGKILLed at random while thousands of tasks run. Every task must end with
its own result or `WorkerCrashedError`, nothing may hang, and the pool must end healthy."""

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

TASKS = 2000


def _worker_pids() -> list[int]:
    me = os.getpid()
    pids = []
    for child in psutil.Process(me).children(recursive=True):
        try:
            if "procpool-worker" in child.name() or child.ppid() != me:
                pids.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


async def test_random_sigkills_fail_only_the_running_tasks() -> None:
    rng = random.Random(1234)
    kills = 0
    async with procpool.Pool(2) as pool:
        tasks = [pool.submit(workfns.echo_after_spin, i) for i in range(TASKS)]

        async def killer() -> None:
            nonlocal kills
            while True:
                await anyio.sleep(rng.uniform(0.01, 0.04))
                if all(task.done() for task in tasks):
                    return  # no kill may land on the health check below
                pids = [pid for pid in _worker_pids() if pid != os.getpid()]
                if pids:
                    try:
                        os.kill(rng.choice(pids), signal.SIGKILL)
                        kills += 1
                    except ProcessLookupError:
                        pass

        with anyio.fail_after(280):
            async with anyio.create_task_group() as tg:
                tg.start_soon(killer)
                for task in tasks:
                    await task._finished()

        crashed = 0
        for index, task in enumerate(tasks):
            error = task.exception()
            if error is None:
                assert task.result() == index  # never another task's result
            else:
                assert isinstance(error, procpool.WorkerCrashedError), repr(error)
                crashed += 1
        assert kills > 0
        assert crashed <= kills
        # Healthy afterwards: every worker answers.
        assert await pool.map(workfns.square, range(50)) == [i * i for i in range(50)]
