"""``InlinePool.stream`` behaves as ``Pool.stream``: every test runs against both pools.

The one documented difference: an inline generator runs in a thread, which cannot be killed, so
a cancelled consumer stops waiting at once while the generator ends at its next item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

import procpool
import workfns
from procpool.testing import InlinePool

pytestmark = pytest.mark.anyio

AnyPool = procpool.Pool | InlinePool


@pytest.fixture(params=["local", "inline"])
def make_pool(request: pytest.FixtureRequest) -> Callable[[], AnyPool]:
    if request.param == "local":
        return lambda: procpool.Pool(1, kill_grace=0.2)
    return InlinePool


@pytest.fixture
def release_dir(tmp_path: Path) -> Iterator[Path]:
    """For `workfns.yield_then_wait_for_release`: released at the end, if a test has not."""
    yield tmp_path
    (tmp_path / "release").touch()


def _log_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_items_arrive_in_order_from_every_kind_of_iterable(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        assert [i async for i in pool.stream(workfns.count_up, 20)] == list(range(20))
        assert [i async for i in pool.stream(workfns.async_count_up, 5)] == list(range(5))
        assert await pool.stream(workfns.numbers_list, 3) == [0, 1, 2]
        assert await pool.stream(lambda: (x * 2 for x in range(3))) == [0, 2, 4]


async def test_the_generator_waits_for_a_slow_consumer(make_pool: Callable[[], AnyPool], tmp_path: Path) -> None:
    log = tmp_path / "produced"
    async with make_pool() as pool, pool.stream(workfns.count_up, 1000, str(log)) as items:
        assert await items.__anext__() == 0
        # Give the generator every chance to run ahead, then check it stopped at its credit.
        previous = -1
        while len(_log_lines(log)) != previous:
            previous = len(_log_lines(log))
            await anyio.sleep(0.2)
        assert 1 < len(_log_lines(log)) <= 1 + 8 + 1
        assert [await items.__anext__() for _ in range(30)] == list(range(1, 31))


async def test_leaving_early_closes_the_generator_and_frees_the_pool(
    make_pool: Callable[[], AnyPool], tmp_path: Path
) -> None:
    log = tmp_path / "produced"
    async with make_pool() as pool:
        async with pool.stream(workfns.count_up, 10**6, str(log)) as items:
            async for i in items:
                if i == 3:
                    break
        assert _log_lines(log)[-1] == "closed"  # aclose() returned once the generator had closed
        assert len(_log_lines(log)) < 100
        assert await pool.run(workfns.square, 3) == 9


async def test_a_generator_error_arrives_after_its_items(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        received = []
        with pytest.raises(ValueError, match="failed after 2"):
            async for item in pool.stream(workfns.fail_after_items, 2):
                received.append(item)
        assert received == [0, 1]
        with pytest.raises(procpool.SerializationError, match="an item of"):
            await pool.stream(workfns.yield_lock)
        with pytest.raises(TypeError, match="not iterable"):
            await pool.stream(workfns.square, 3)
        with pytest.raises(ValueError, match="retries"):
            pool.options(retries=1).stream(workfns.count_up, 3)
        assert await pool.run(workfns.square, 3) == 9


async def test_cancelling_the_consumer_stops_the_stream(make_pool: Callable[[], AnyPool], release_dir: Path) -> None:
    async with make_pool() as pool:
        received = []
        with anyio.move_on_after(0.5) as scope:
            async for item in pool.stream(workfns.yield_then_wait_for_release, str(release_dir), 10):
                received.append(item)
        assert scope.cancelled_caught
        assert len(received) == 1  # never "late": the generator was stopped (or its worker killed)
        (release_dir / "release").touch()  # an inline generator runs on to its next item (documented)
        with anyio.fail_after(10):
            assert await pool.run(workfns.square, 3) == 9


async def test_a_stream_past_its_timeout_raises_timeout_error(
    make_pool: Callable[[], AnyPool], release_dir: Path
) -> None:
    async with make_pool() as pool:
        received = []
        with anyio.fail_after(10), pytest.raises(TimeoutError, match="timeout"):
            async for item in pool.options(timeout=0.5).stream(
                workfns.yield_then_wait_for_release, str(release_dir), 10
            ):
                received.append(item)
        assert len(received) == 1
        (release_dir / "release").touch()
        with anyio.fail_after(10):
            assert await pool.run(workfns.square, 3) == 9


async def test_streams_and_calls_take_turns(make_pool: Callable[[], AnyPool]) -> None:
    async with make_pool() as pool:
        first = pool.stream(workfns.count_up, 3)
        call = pool.submit(workfns.square, 4)
        second = pool.stream(workfns.async_count_up, 2)
        assert await first == [0, 1, 2]
        assert await call == 16
        assert await second == [0, 1]
