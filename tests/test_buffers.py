"""Large buffers (numpy arrays, bytes, bytearray, memoryview) travel out of band, through a memory
file, both ways: they arrive intact, numpy arrays and memoryviews as views of the file's mapping,
and nothing stays behind (descriptors, mappings, files in /dev/shm) however the task ends."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import buffer_fns
import crash_fns
import procpool
import workfns
from script_env import script_env

np = pytest.importorskip("numpy")  # a dev dependency (procpool[examples]); a bare install may lack it

pytestmark = pytest.mark.anyio

SCRIPTS = Path(__file__).parent / "scripts"
THRESHOLD = 64 * 1024
LARGE = 3 * THRESHOLD


def _memory_files_here() -> list[str]:
    return [target for target in _descriptor_targets() if "procpool-buffers" in target]


def _descriptor_targets() -> Iterator[str]:
    for name in os.listdir("/proc/self/fd"):
        try:
            yield os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue


def _dev_shm() -> set[str]:
    """The files in /dev/shm, less POSIX semaphores ("sem.*"), which other processes on a shared
    machine make and remove at any time (and nothing here makes)."""
    if not os.path.isdir("/dev/shm"):
        return set()
    return {name for name in os.listdir("/dev/shm") if not name.startswith("sem.")}


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types, containers and numpy arrays included."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())
    if isinstance(a, memoryview):
        return a.format == b.format and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    return bool(a == b)


CASES = {
    "float64 array": np.arange(LARGE // 8, dtype=np.float64),
    "2-d int32 array": np.arange(LARGE // 4, dtype=np.int32).reshape(-1, 64),
    "fortran array": np.asfortranarray(np.arange(LARGE // 8, dtype=np.float64).reshape(64, -1)),
    "bytes": bytes(range(256)) * (LARGE // 256),
    "bytearray": bytearray(b"ab" * (LARGE // 2)),
    "memoryview": memoryview(b"xyz" * (LARGE // 3)),
    "2-d memoryview of doubles": memoryview(np.arange(LARGE // 8, dtype=np.float64).reshape(-1, 32)),
    "nested": {
        "arrays": [np.ones(LARGE // 8), np.zeros(10)],
        "raw": (b"\x01" * LARGE, bytearray(3), memoryview(bytearray(LARGE))),
        "text": "s" * LARGE,
    },
    "zero-length": [np.zeros(0), b"", bytearray(), memoryview(b"")],
    "just under the threshold": [np.ones((THRESHOLD - 1) // 8), b"u" * (THRESHOLD - 1), bytearray(THRESHOLD - 1)],
    "just over the threshold": [np.ones(THRESHOLD // 8), b"o" * THRESHOLD, bytearray(THRESHOLD)],
    "the same bytes twice": [b"t" * LARGE] * 2,
}


@pytest.mark.parametrize("case", CASES)
async def test_buffers_cross_intact_both_ways(case: str) -> None:
    value = CASES[case]
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        back = await pool.run(buffer_fns.echo, value)
        assert _same(back, value)
        assert await pool.run(buffer_fns.memory_files) == []
    assert _memory_files_here() == []


async def test_large_calls_copied_by_several_threads_arrive_intact_into_new_and_reused_files() -> None:
    """Calls of several MiB, whose copy into the memory file is shared among threads (cut inside
    and across buffers of odd sizes); then the same file reused at the same size, and at others."""
    mib = 2**20

    def call(seed: int, scale: int) -> list[Any]:
        period = bytes(range(seed, seed + 251))  # a prime period: a piece at a wrong offset shows
        return [
            np.arange(scale * mib // 8 + 5, dtype=np.float64) * seed,
            period * (5 * mib // 251) + b"end",
            memoryview(np.arange(mib + 1, dtype=np.uint8) + seed).toreadonly(),
            np.full(3, seed),
        ]

    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        for seed, scale in [(1, 9), (2, 9), (3, 2), (4, 13)]:
            value = call(seed, scale)
            assert _same(await pool.run(buffer_fns.echo, value), value)
    assert _memory_files_here() == []


def test_large_calls_interrupted_by_a_signal_handler_leave_the_process_intact() -> None:
    """A signal handler that raises (as ``sys.exit`` in a SIGTERM handler does) in the middle of
    large calls, whose copy helper threads share: the process lives on (helpers never copy into
    memory the interrupted call let go of), and the calls not interrupted arrive intact."""
    script = subprocess.run(
        [sys.executable, str(SCRIPTS / "interrupted_large_calls.py"), "60"],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=120,
    )
    assert script.returncode == 0, script.stderr[-3000:]
    match = re.fullmatch(r"done (\d+) interrupted (\d+)\n", script.stdout)
    assert match is not None, script.stdout
    assert int(match[2]) > 0  # else it tested nothing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.ones(LARGE // 8), ("ndarray", "shared", True)),
        (memoryview(bytearray(LARGE)), ("memoryview", "shared", True)),
        (memoryview(b"r" * LARGE), ("memoryview", "shared", False)),
        (b"b" * LARGE, ("bytes", "own", False)),
        (bytearray(LARGE), ("bytearray", "own", True)),
        (np.ones((THRESHOLD - 1) // 8), ("ndarray", "own", True)),  # under the threshold: in the pickle
    ],
    ids=["array", "writable memoryview", "read-only memoryview", "bytes", "bytearray", "small array"],
)
async def test_large_arrays_and_memoryviews_arrive_as_views_bytes_as_copies(
    value: Any, expected: tuple[str, str, bool]
) -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        assert await pool.run(buffer_fns.arrival, value) == expected


async def test_a_large_bytearray_named_twice_arrives_as_one_object() -> None:
    value = bytearray(LARGE)
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        back = await pool.run(buffer_fns.echo, [value, value])
    assert back[0] is back[1]


async def test_a_read_only_array_arrives_read_only() -> None:
    array = np.ones(LARGE // 8)
    array.flags.writeable = False
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        assert await pool.run(buffer_fns.arrival, array) == ("ndarray", "shared", False)


async def test_a_worker_writing_into_its_view_changes_neither_the_callers_array_nor_the_next_call() -> None:
    array = np.ones(LARGE // 8)
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        assert await pool.run(buffer_fns.zero_first, array) == array.size - 1
        assert await pool.run(buffer_fns.zero_first, array) == array.size - 1
    assert array[0] == 1


async def test_a_large_result_arrives_as_a_view_and_is_unmapped_when_dropped() -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        result = await pool.run(buffer_fns.ones, LARGE // 8)
        assert buffer_fns.where(result) == "shared"
        assert result.flags.writeable
        result[0] = 5  # copy on write: a private page
        assert result.sum() == result.size + 4
        assert any("procpool-buffers" in line for line in _maps())
        del result
        assert not any("procpool-buffers" in line for line in _maps())
        assert _memory_files_here() == []


def _maps() -> list[str]:
    with open("/proc/self/maps") as maps:
        return maps.readlines()


async def test_a_streams_large_items_arrive_as_views() -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        items = [item async for item in pool.stream(buffer_fns.arrays, 12, LARGE // 8)]
    assert [buffer_fns.where(item) for item in items] == ["shared"] * 12
    assert [float(item.mean()) for item in items] == [float(i) for i in range(12)]
    del items
    assert _memory_files_here() == []


async def test_a_stream_closed_early_leaves_no_item_behind() -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        async with pool.stream(buffer_fns.arrays, 100, LARGE // 8) as stream:
            async for item in stream:
                assert buffer_fns.where(item) == "shared"
                await anyio.sleep(0.3)  # meanwhile the worker sends a window of items, which wait unread
                break
        del item
        assert _memory_files_here() == []
        assert await pool.run(buffer_fns.memory_files) == []


async def test_the_argument_is_unmapped_in_the_worker_once_the_task_is_done() -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        assert await pool.run(buffer_fns.arrival, np.ones(LARGE // 8)) == ("ndarray", "shared", True)
        assert await pool.run(buffer_fns.mapped_memory_files) == []
        assert await pool.run(buffer_fns.memory_files) == []


def _memory_file_inodes() -> set[int]:
    inodes = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if "procpool-buffers" in os.readlink(f"/proc/self/fd/{name}"):
                inodes.add(os.stat(f"/proc/self/fd/{name}").st_ino)
        except OSError:
            continue
    return inodes


async def test_a_memory_file_is_reused_once_its_worker_maps_it_no_more_and_closed_with_the_pool() -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        assert await pool.run(buffer_fns.arrival, np.ones(LARGE // 8)) == ("ndarray", "shared", True)
        reused = _memory_file_inodes()
        assert len(reused) == 1  # waits for the next call
        assert await pool.run(buffer_fns.arrival, np.zeros(LARGE // 4)) == ("ndarray", "shared", True)
        assert _memory_file_inodes() == reused
        assert await pool.run(buffer_fns.echo, b"r" * LARGE) == b"r" * LARGE
        assert _memory_file_inodes() == reused
    assert _memory_files_here() == []


async def test_an_argument_a_worker_keeps_is_never_overwritten_by_a_later_call() -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        await pool.run(buffer_fns.keep, np.ones(LARGE // 8))
        for _ in range(3):
            assert await pool.run(buffer_fns.arrival, np.zeros(LARGE // 8)) == ("ndarray", "shared", True)
        assert await pool.run(buffer_fns.kept_sums) == [LARGE // 8]
        assert await pool.run(buffer_fns.mapped_memory_files) != []  # still mapped there


async def test_none_keeps_every_buffer_in_the_pickle() -> None:
    async with procpool.Pool(1, buffer_threshold=None) as pool:
        assert await pool.run(buffer_fns.arrival, np.ones(LARGE // 8)) == ("ndarray", "own", True)
        back = await pool.run(buffer_fns.echo, memoryview(b"m" * LARGE))
        assert back == memoryview(b"m" * LARGE)
        assert buffer_fns.where(await pool.run(buffer_fns.ones, LARGE // 8)) == "own"


@pytest.mark.parametrize(
    ("threshold", "error"),
    [
        (THRESHOLD - 1, ValueError),
        (0, ValueError),
        (-1, ValueError),
        (True, TypeError),
        ("1M", TypeError),
        (1e6, TypeError),
    ],
)
def test_a_bad_threshold_is_refused_with_a_clear_error(threshold: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="buffer_threshold"):
        procpool.Pool(1, buffer_threshold=threshold)  # type: ignore[arg-type]


async def test_an_argument_too_large_for_the_workers_memory_fails_its_task_and_the_worker_lives() -> None:
    """Read once the task has begun (in the pickle, the worker would die receiving it: see
    tests/test_crash_detection.py), a large buffer that cannot be allocated is the task's error."""
    async with procpool.Pool(
        1, buffer_threshold=THRESHOLD, initializer=crash_fns.limit_address_space, initargs=(16 * 2**20,)
    ) as pool:
        pid = await pool.run(workfns.getpid)
        with anyio.fail_after(15), pytest.raises(MemoryError):
            await pool.run(crash_fns.size_of, bytes(64 * 2**20))
        assert await pool.run(workfns.getpid) == pid


# -- nothing left behind ---------------------------------------------------------------------------


@pytest.fixture
def nothing_left_behind() -> Iterator[None]:
    """No memory file open here after the test (the autouse check sees any descriptor too), and no
    new file in /dev/shm."""
    shm = _dev_shm()
    yield
    assert _memory_files_here() == []
    assert _dev_shm() == shm


@pytest.mark.usefixtures("nothing_left_behind")
async def test_nothing_left_after_an_exception() -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        with pytest.raises(ValueError, match=f"refused {LARGE} bytes"):
            await pool.run(buffer_fns.raise_with, b"e" * LARGE)
        with pytest.raises(ValueError, match=f"refused {LARGE}"):
            await pool.run(buffer_fns.raise_with, np.ones(LARGE))
        assert await pool.run(buffer_fns.memory_files) == []
        assert await pool.run(buffer_fns.mapped_memory_files) == []


@pytest.mark.usefixtures("nothing_left_behind")
@pytest.mark.parametrize("kill_on_cancel", [True, False])
async def test_nothing_left_after_a_cancel(kill_on_cancel: bool) -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD, kill_on_cancel=kill_on_cancel) as pool:
        running = pool.submit(buffer_fns.sleep_with, np.ones(LARGE // 8), 0.5)
        queued = pool.submit(buffer_fns.sleep_with, b"q" * LARGE, 0)  # never sent: the worker is busy
        with anyio.fail_after(10):
            while not running.running():
                await anyio.sleep(0.01)
        assert len(_memory_files_here()) == 2  # each job's, until it settles
        queued.cancel()
        assert len(_memory_files_here()) == 1
        running.cancel()
        with pytest.raises(procpool.TaskCancelledError):
            await running
        assert _memory_files_here() == []
        with anyio.fail_after(10):
            assert await pool.run(buffer_fns.memory_files) == []
            assert await pool.run(buffer_fns.mapped_memory_files) == []


@pytest.mark.usefixtures("nothing_left_behind")
async def test_nothing_left_after_a_timeout() -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        with pytest.raises(TimeoutError):
            await pool.options(timeout=0.2).run(buffer_fns.sleep_with, b"t" * LARGE, 10)
        assert _memory_files_here() == []
        with anyio.fail_after(10):
            assert await pool.run(buffer_fns.memory_files) == []


@pytest.mark.usefixtures("nothing_left_behind")
async def test_nothing_left_after_a_worker_is_sigkilled() -> None:
    async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
        with pytest.raises(procpool.WorkerCrashedError):
            await pool.run(buffer_fns.die_with, np.ones(LARGE // 8))
        assert _memory_files_here() == []
        with anyio.fail_after(10):
            assert await pool.run(buffer_fns.memory_files) == []
            back = await pool.run(buffer_fns.echo, b"a" * LARGE)  # the new worker takes buffers too
        assert back == b"a" * LARGE


@pytest.mark.usefixtures("nothing_left_behind")
async def test_a_pool_closed_with_large_tasks_queued_leaves_nothing() -> None:
    with pytest.raises(RuntimeError, match="stop"):
        async with procpool.Pool(1, buffer_threshold=THRESHOLD) as pool:
            for _ in range(3):
                pool.submit(buffer_fns.sleep_with, np.ones(LARGE // 8), 5)
            await anyio.sleep(0.1)
            raise RuntimeError("stop")
