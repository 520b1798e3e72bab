"""Observability: child logs and output reach the parent, progress, stats, task timing, events,
and the Prometheus exporter."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

import procpool
import workfns
from script_env import script_env

pytestmark = pytest.mark.anyio

LOGGER = "procpool_tests.child"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def child_records() -> Iterator[list[logging.LogRecord]]:
    """Records reaching a handler on the test logger, which is set to INFO."""
    logger = logging.getLogger(LOGGER)
    handler = _Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


# -- logging ----------------------------------------------------------------------------------


async def test_a_child_log_record_reaches_the_parent_handler(child_records: list[logging.LogRecord]) -> None:
    async with procpool.Pool(1) as pool:
        pid = await pool.run(workfns.log_at, LOGGER, logging.WARNING, "from %s", {"order": 17})
        await pool.run(workfns.log_exception, LOGGER)

    warning, error = child_records
    assert (warning.name, warning.levelno, warning.getMessage()) == (LOGGER, logging.WARNING, f"from {pid}")
    assert warning.process == pid
    assert warning.worker_pid == pid
    assert warning.order == 17  # type: ignore[attr-defined]
    assert warning.pathname.endswith("workfns.py")
    assert error.levelno == logging.ERROR
    assert error.exc_text is not None
    assert "ValueError: logged from a worker" in error.exc_text


async def test_records_below_the_parents_level_stay_in_the_worker(child_records: list[logging.LogRecord]) -> None:
    async with procpool.Pool(1) as pool:
        await pool.run(workfns.log_at, LOGGER, logging.DEBUG, "debug %s")
        await pool.run(workfns.log_at, LOGGER, logging.INFO, "info %s")
    assert [record.levelname for record in child_records] == ["INFO"]


async def test_forward_logs_false_leaves_worker_logging_alone(child_records: list[logging.LogRecord]) -> None:
    async with procpool.Pool(1, forward_logs=False) as pool:
        await pool.run(workfns.log_at, LOGGER, logging.ERROR, "kept %s")
    assert child_records == []


# -- stdout and stderr ------------------------------------------------------------------------


async def test_child_print_is_visible_in_the_parent(capsys: pytest.CaptureFixture[str]) -> None:
    async with procpool.Pool(1, initializer=workfns.print_in_initializer, initargs=("init says hi",)) as pool:
        await pool.run(workfns.print_both, "to stdout", "to stderr")
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["init says hi", "to stdout", "no newline yet"]
    assert captured.err.splitlines() == ["to stderr"]


async def test_a_task_that_closes_stdout_does_not_silence_the_next(capsys: pytest.CaptureFixture[str]) -> None:
    async with procpool.Pool(1) as pool:
        await pool.run(workfns.close_stdout)
        await pool.run(workfns.print_line, "still here")
    assert "still here" in capsys.readouterr().out


async def test_bytes_written_to_the_binary_buffers_arrive_like_printed_text(capsys: pytest.CaptureFixture[str]) -> None:
    """``sys.stdout.buffer`` and ``sys.stderr.buffer`` forward bytes in order with printed text,
    decoded as UTF-8 like it, also a character whose bytes came in two writes. A wrapper of the
    buffer, collected, closes stdout; the next task gets a new one."""
    async with procpool.Pool(1) as pool:
        await pool.run(workfns.print_through_a_wrapper, "through a wrapper")
        await pool.run(workfns.write_to_binary_buffers)
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "through a wrapper",
        "printed first",
        "bytes: \xe9",
        "printed then bytes",
        "no newline yet",
    ]
    assert captured.err.splitlines() == ["to stderr \u2713"]


_FORKING_OWNER = """
import anyio, procpool, workfns

async def main():
    async with procpool.Pool(1) as pool:
        print("status", await pool.run(workfns.fork_then_print_and_log, "from the grandchild"), flush=True)

if __name__ == "__main__":
    anyio.run(main)
"""


def test_a_process_forked_by_a_task_prints_to_the_inherited_streams() -> None:
    """The forked child has no channel to the parent (it is closed at fork): its prints and
    warnings go to the descriptors the worker inherited, here the owner's own pipes."""
    done = subprocess.run(
        [sys.executable, "-c", _FORKING_OWNER],
        capture_output=True,
        text=True,
        timeout=60,
        env=script_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "status 0" in done.stdout.splitlines()
    assert "print: from the grandchild" in done.stdout.splitlines()
    assert "log: from the grandchild" in done.stderr.splitlines()


# -- progress ---------------------------------------------------------------------------------


async def test_report_progress_reaches_the_task_handle_and_callbacks() -> None:
    seen: list[tuple[float, float | None]] = []
    async with procpool.Pool(1) as pool:
        task = pool.submit(workfns.report_steps, 5, 0.06)
        task.add_progress_callback(lambda done, total: seen.append((done, total)))
        assert await task == 5
    assert task.progress == (5, 5)
    assert seen[-1] == (5, 5)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_report_progress_outside_a_worker_does_nothing() -> None:
    assert workfns.report_steps(2, 0) == 2


async def test_map_progress_text_reaches_100_percent(capsys: pytest.CaptureFixture[str]) -> None:
    async with procpool.Pool(2) as pool:
        results = await pool.map(workfns.square, range(40), chunksize=3, progress=True)
    assert results == [x * x for x in range(40)]
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[-1].startswith("square: 100% [")
    assert " 40/40 " in lines[-1]
    percents = [int(m) for m in re.findall(r"square:\s+(\d+)%", err)]
    assert percents == sorted(percents)
    assert len(percents) >= 5


async def test_map_progress_with_tqdm_reaches_100_percent(capsys: pytest.CaptureFixture[str]) -> None:
    async with procpool.Pool(2) as pool:
        async for _ in pool.map(workfns.square, range(20), progress="tqdm"):
            pass
    err = capsys.readouterr().err
    assert "100%" in err
    assert "20/20" in err


async def test_map_progress_callback_counts_every_item() -> None:
    calls: list[tuple[int, int | None]] = []
    async with procpool.Pool(2) as pool:
        await pool.map(workfns.square, range(10), chunksize=4, progress=lambda done, total: calls.append((done, total)))
        await pool.starmap(workfns.mul, ((x, x) for x in range(3)), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(4, 10), (8, 10), (10, 10), (1, None), (2, None), (3, None)]


async def test_map_rejects_an_unknown_progress_option() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(ValueError, match="progress must be"):
            pool.map(workfns.square, range(3), progress="fancy")  # type: ignore[arg-type]


# -- stats, timing, events --------------------------------------------------------------------


async def test_stats_count_a_scripted_workload_exactly() -> None:
    async with procpool.Pool(1) as pool:
        assert pool.stats().completed == 0
        assert pool.stats().run_time_mean is None
        for x in range(5):
            await pool.run(workfns.square, x)
        for _ in range(2):
            with pytest.raises(ValueError):
                await pool.run(workfns.raise_value_error, "no")
        with pytest.raises(procpool.WorkerCrashedError):
            await pool.run(workfns.exit_hard, 3)
        running = pool.submit(workfns.sleep_and_return, 0.3)
        queued = pool.submit(workfns.square, 2)
        await anyio.sleep(0.1)
        during = pool.stats()
        queued.cancel()
        await running
        stats = pool.stats()

    assert (during.busy, during.running, during.queued, during.alive, during.idle) == (1, 1, 1, 1, 0)
    assert (stats.completed, stats.failed, stats.cancelled, stats.crashed) == (6, 3, 1, 1)
    assert (stats.workers, stats.alive, stats.busy, stats.queued) == (1, 1, 0, 0)
    assert stats.run_time_p99 is not None
    assert 0.3 <= stats.run_time_p99 < 5
    assert stats.run_time_mean is not None
    assert 0 < stats.run_time_mean <= stats.run_time_p99
    assert stats.queue_wait_mean is not None
    assert 0 <= stats.queue_wait_mean < 5
    assert "6 completed, 3 failed, 1 cancelled" in str(stats)


async def test_a_task_cancelled_while_sent_ahead_is_not_counted_as_running() -> None:
    """A task cancelled while it waits behind a running one settles at once, before its worker
    says it skipped it: from then on the stats count it neither running nor queued, and its
    worker is idle once the task ahead has ended (a chunked map's aclose relies on this). Read
    from the hook as the task ahead ends, before the worker's answer can have been read."""
    at_head_end: list[procpool.PoolStats] = []

    def on_event(event: object) -> None:
        if isinstance(event, procpool.TaskEnded) and event.task is head:
            at_head_end.append(pool.stats())

    async with procpool.Pool(1, on_event=on_event) as pool:
        await pool.run(workfns.square, 1)  # a short task time: tasks are sent ahead
        first = pool.submit(workfns.square, 1)
        head = pool.submit(workfns.sleep_and_return, 0.3)
        ahead = pool.submit(workfns.square, 2)
        await first  # its worker took the next queued task and one more, sent ahead behind it
        await anyio.sleep(0.1)
        assert pool.stats().queued == 1
        ahead.cancel()
        assert (pool.stats().running, pool.stats().queued) == (1, 0)
        await head
        assert await pool.run(workfns.square, 3) == 9
    [stats] = at_head_end
    assert (stats.running, stats.busy, stats.idle, stats.queued) == (0, 0, 1, 0)


async def test_stats_count_recycled_workers() -> None:
    async with procpool.Pool(1, max_tasks_per_worker=2) as pool:
        pids = [await pool.run(workfns.getpid) for _ in range(5)]
        stats = pool.stats()
    assert len(set(pids)) == 3
    assert (stats.recycled, stats.crashed, stats.completed) == (2, 0, 5)


async def test_task_timing_is_ordered_and_measures_the_run() -> None:
    async with procpool.Pool(1) as pool:
        task = pool.submit(workfns.sleep_and_return, 0.1, "x")
        assert task.timing.started is None
        await task
    timing = task.timing
    assert timing.sent is not None
    assert timing.started is not None
    assert timing.finished is not None
    assert timing.received is not None
    assert timing.submitted <= timing.sent <= timing.started <= timing.finished <= timing.received
    assert timing.run_time is not None
    assert 0.1 <= timing.run_time < 5
    assert timing.queue_wait is not None
    assert timing.total is not None
    assert timing.total >= timing.run_time


async def test_events_report_workers_and_tasks() -> None:
    events: list[Any] = []
    async with procpool.Pool(1, on_event=events.append) as pool:
        first = await pool.run(workfns.getpid)
        with pytest.raises(procpool.WorkerCrashedError):
            await pool.run(workfns.exit_hard, 3)
        second = await pool.run(workfns.getpid)

    kinds = [type(event).__name__ for event in events]
    assert kinds == [
        "WorkerStarted",
        "TaskStarted",
        "TaskEnded",
        "TaskStarted",
        "TaskEnded",
        "WorkerStarted",  # the replacement starts while the dead worker is reaped
        "WorkerExited",
        "TaskStarted",
        "TaskEnded",
        "WorkerExited",
    ]
    assert events[0] == procpool.WorkerStarted(first)
    assert events[1].pid == first
    assert events[2].task.result() == first
    assert events[5] == procpool.WorkerStarted(second)
    assert events[6] == procpool.WorkerExited(first, "crashed", 3)
    assert events[9] == procpool.WorkerExited(second, "closed", 0)


async def test_a_failing_event_hook_is_logged_and_the_pool_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("hook bug")

    async with procpool.Pool(1, on_event=broken) as pool:
        assert await pool.run(workfns.square, 3) == 9
    assert any("on_event hook raised" in record.getMessage() for record in caplog.records)


def test_pool_rejects_a_non_callable_event_hook() -> None:
    with pytest.raises(TypeError, match="on_event"):
        procpool.Pool(1, on_event="print")  # type: ignore[arg-type]


# -- Prometheus ---------------------------------------------------------------------------------


async def test_prometheus_endpoint_exposes_the_stats() -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    from procpool.integrations.prometheus import PoolCollector

    registry = CollectorRegistry()
    async with procpool.Pool(2) as pool:
        registry.register(PoolCollector(pool, labels={"pool": "test"}))
        await pool.map(workfns.square, range(3))
        with pytest.raises(ValueError):
            await pool.run(workfns.raise_value_error, "no")
        server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        try:
            port = server.server_port
            response = await anyio.to_thread.run_sync(httpx.get, f"http://127.0.0.1:{port}/metrics")
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
    body = response.text
    assert response.status_code == 200
    assert 'procpool_tasks_completed_total{pool="test"} 3.0' in body
    assert 'procpool_tasks_failed_total{pool="test"} 1.0' in body
    assert 'procpool_workers_alive{pool="test"} 2.0' in body
    assert re.search(r'procpool_run_time_seconds\{pool="test",stat="p99"\} [0-9.e-]+', body)


def test_stats_can_be_read_from_another_thread() -> None:
    async def main() -> procpool.PoolStats:
        async with procpool.Pool(1) as pool:
            await pool.run(workfns.square, 2)
            result: list[procpool.PoolStats] = []
            reader = threading.Thread(target=lambda: result.append(pool.stats()))
            reader.start()
            while reader.is_alive():
                await anyio.sleep(0.01)
            return result[0]

    stats = anyio.run(main)
    assert (stats.completed, stats.alive) == (1, 1)
