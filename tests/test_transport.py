"""A slot's channel to its worker: payloads of any size cross it intact; a cancel or a timeout acts
on a running task at once, even with a large task queued behind it and while the task's own
threads print and log, under asyncio, uvloop and trio."""

from __future__ import annotations

import os
import random
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
# Around the sizes a channel's reader treats apart: a small frame (64 KiB) and one read (256 KiB),
# beyond which a frame's body is read straight into a buffer of its own.
FRAME_SIZES = [0, 1, 17, 2**16 - 1, 2**16, 2**16 + 1, 200_000, 2**18 - 1, 2**18, 2**18 + 1, 700_000]


async def _until_exists(marker: Path) -> None:
    with anyio.fail_after(10):
        while not marker.exists():
            await anyio.sleep(0.01)


async def _warm_up(pool: procpool.Pool) -> None:
    """One task done: the slot knows the recent task time, so it sends tasks ahead of a running one."""
    assert await pool.run(workfns.square, 2) == 4


@pytest.mark.timeout(60)
async def test_frames_of_every_size_cross_intact_when_many_wait_in_the_channel() -> None:
    # Every payload in the channel itself (no shared memory). Small calls go ahead of a running
    # task and wait in the worker's end; results wait in ours while the loop is held: so reads
    # take many frames at once and end part way into one, at every size around the reader's limits.
    rng = random.Random(14)
    arguments = [os.urandom(rng.choice([0, 1, 17, 1000, 30_000, 60_000])) for _ in range(60)]
    result_sizes = [rng.choice(FRAME_SIZES) for _ in arguments]
    async with procpool.Pool(1, buffer_threshold=None) as pool:
        await _warm_up(pool)
        running = pool.submit(workfns.sleep_and_return, 0.3)
        tasks = [
            pool.submit(workfns.repeat_to_size, argument, size)
            for argument, size in zip(arguments, result_sizes, strict=True)
        ]
        await anyio.sleep(0.05)  # the calls go ahead, to the worker's end of the channel
        time.sleep(1.0)  # noqa: ASYNC251  # holds the loop on purpose, while results fill our end
        await running
        for task, argument, size in zip(tasks, arguments, result_sizes, strict=True):
            assert await task == workfns.repeat_to_size(argument, size)


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
