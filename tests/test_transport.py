"""A slot's channel to its worker: a cancel or a timeout acts on a running task at once, even with
a large task queued behind it and while the task's own threads print and log, under asyncio,
uvloop and trio."""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path

import anyio
import pytest

import procpool
import workfns

pytestmark = pytest.mark.anyio

LARGE = 20 * 2**20  # far more than a socket buffer holds
SLACK = 1.5  # seconds a timeout or cancel may take to act, on a loaded machine
TIMEOUT = 1.0  # seconds: long enough for the task to begin first, on a loaded machine


async def _until_exists(marker: Path) -> None:
    with anyio.fail_after(10):
        while not marker.exists():
            await anyio.sleep(0.01)


async def _warm_up(pool: procpool.Pool) -> None:
    """One task done: the slot knows the recent task time, so it sends tasks ahead of a running one."""
    assert await pool.run(workfns.square, 2) == 4


@pytest.mark.timeout(45)
async def test_timeout_fires_on_time_with_a_large_task_queued_behind() -> None:
    payload = os.urandom(LARGE)
    async with procpool.Pool(1) as pool:
        await _warm_up(pool)
        submitted = time.monotonic()
        slow = pool.options(timeout=TIMEOUT).submit(workfns.sleep_and_return, 30)
        large = pool.submit(zlib.crc32, payload)
        with pytest.raises(TimeoutError):
            await slow
        assert time.monotonic() - submitted < TIMEOUT + SLACK
        assert await large == zlib.crc32(payload)


@pytest.mark.timeout(45)
async def test_cancel_of_a_running_task_ends_promptly_with_a_large_task_queued_behind(tmp_path: Path) -> None:
    payload = os.urandom(LARGE)
    marker = tmp_path / "began"
    async with procpool.Pool(1) as pool:
        await _warm_up(pool)
        slow = pool.submit(workfns.touch_after, str(marker), 30)
        large = pool.submit(zlib.crc32, payload)
        await _until_exists(marker)
        cancelled = time.monotonic()
        slow.cancel()
        with pytest.raises(procpool.TaskCancelledError):
            await slow
        assert time.monotonic() - cancelled < SLACK
        assert await large == zlib.crc32(payload)


@pytest.mark.timeout(45)
async def test_timeout_fires_on_time_while_the_running_task_prints_and_logs(tmp_path: Path) -> None:
    payload = os.urandom(LARGE)
    marker = tmp_path / "began"
    async with procpool.Pool(1) as pool:
        await _warm_up(pool)
        submitted = time.monotonic()
        chatty = pool.options(timeout=TIMEOUT).submit(workfns.touch_and_chatter, str(marker), 30)
        large = pool.submit(zlib.crc32, payload)
        await _until_exists(marker)
        with pytest.raises(TimeoutError):
            await chatty
        assert time.monotonic() - submitted < TIMEOUT + SLACK
        assert await large == zlib.crc32(payload)
        assert await pool.run(workfns.square, 3) == 9


@pytest.mark.timeout(45)
async def test_timeout_fires_on_time_with_more_small_tasks_queued_behind_than_the_channel_holds(
    tmp_path: Path,
) -> None:
    # After a burst of tiny tasks, a slot sends dozens of tasks ahead of a running one; at 60 kB
    # each (under the large-call size) they fill the channel while the running task's thread
    # prints and logs.
    chunk = os.urandom(60_000)
    marker = tmp_path / "began"
    async with procpool.Pool(1) as pool:
        tiny = [pool.submit(workfns.square, x) for x in range(2000)]
        assert [await task for task in tiny] == [x * x for x in range(2000)]
        submitted = time.monotonic()
        chatty = pool.options(timeout=TIMEOUT).submit(workfns.touch_and_chatter, str(marker), 30)
        behind = [pool.submit(zlib.crc32, chunk) for _ in range(40)]
        await _until_exists(marker)
        with pytest.raises(TimeoutError):
            await chatty
        assert time.monotonic() - submitted < TIMEOUT + SLACK
        assert [await task for task in behind] == [zlib.crc32(chunk)] * 40
