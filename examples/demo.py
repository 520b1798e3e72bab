"""procpool demo: CPU-bound work in an async program, without freezing its event loop.

Picture a server. Besides the requests it is working on, its event loop must keep serving
everyone else: timeouts, keep-alives, the next small request. This program stands in for all of
that with a *heartbeat*: a coroutine that sleeps 1 ms in a loop and records how late each wake-up
is (its *lag*). Lag is latency every other client of the server would feel.

Meanwhile the program handles a batch of requests, all at once as a server would. Each request
waits for some IO (``asyncio.sleep``, standing in for a database or an upstream call) and then
does 0.1-0.25 s of CPU work in Python (a SHA-256 hash chain, which holds the GIL). It does so
three ways:

1. blocking: call the CPU function right in the coroutine. Simple and correct, but the loop
   stalls for the whole batch, and only one CPU is used.
2. ``loop.run_in_executor(ProcessPoolExecutor(...), fn, x)``: the standard library's answer.
3. procpool: ``await pool.run(fn, x)``.

Each way starts (and stops) its own worker processes inside the timed run, so start-up costs
count. A plain ``for`` loop with no event loop is the baseline for the speedup, and its results
are the reference every other way is checked against.

Last, procpool runs the batch once more as one ``pool.starmap(..., progress=True)``, with a
progress bar, and prints the pool's own account of it: ``pool.stats()``.

Run it with ``make demo``, or ``python examples/demo.py [--quick] [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import procpool

HEARTBEAT_INTERVAL = 0.001  # seconds


@dataclass(frozen=True)
class Job:
    """One request: wait ``io_wait`` seconds for IO, then run ``rounds`` of the hash chain."""

    seed: int
    rounds: int
    io_wait: float


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    method: str
    wall: float
    lags: list[float]
    correct: bool


def hash_chain(seed: int, rounds: int) -> str:
    """CPU-bound work: SHA-256 applied ``rounds`` times, roughly 0.5-1 us per round.

    Hashing 32 bytes is too short for hashlib to release the GIL, so this holds it throughout,
    like any pure-Python computation would.
    """
    digest = seed.to_bytes(8, "little")
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def make_jobs(quick: bool) -> list[Job]:
    """A fixed, varied batch, so every run (and every method) does the same work."""
    count, base, step = (4, 20_000, 5_000) if quick else (16, 175_000, 25_000)
    return [
        # The multipliers only scatter the sizes and waits: 0.1-0.25 s of CPU, 5-33 ms of IO.
        Job(seed=i, rounds=base + (i * 7 % 11) * step, io_wait=0.005 + (i * 3 % 8) * 0.004)
        for i in range(count)
    ]


# -- the three ways to run a job in an async program -------------------------------------------

Compute = Callable[[Job], Awaitable[str]]


async def handle_all(jobs: Sequence[Job], compute: Compute) -> list[str]:
    """Handle every job concurrently, as a server handles the requests it has in flight."""

    async def handle(job: Job) -> str:
        await asyncio.sleep(job.io_wait)  # the request's IO
        return await compute(job)

    return list(await asyncio.gather(*(handle(job) for job in jobs)))


async def run_blocking(jobs: Sequence[Job], workers: int) -> list[str]:
    """1. The CPU work runs on the event loop itself (``workers`` is unused)."""

    async def compute(job: Job) -> str:
        return hash_chain(job.seed, job.rounds)  # nothing else runs on the loop meanwhile

    return await handle_all(jobs, compute)


async def run_executor(jobs: Sequence[Job], workers: int) -> list[str]:
    """2. The standard library: a process pool executor, awaited through the loop."""
    loop = asyncio.get_running_loop()
    # The usual way to write it: `with` shuts the executor down (and waits for it) on exit.
    with ProcessPoolExecutor(max_workers=workers) as executor:

        async def compute(job: Job) -> str:
            return await loop.run_in_executor(executor, hash_chain, job.seed, job.rounds)

        return await handle_all(jobs, compute)


async def run_procpool(jobs: Sequence[Job], workers: int) -> list[str]:
    """3. procpool: the workers are started and ready when ``async with`` returns."""
    async with procpool.Pool(workers) as pool:

        async def compute(job: Job) -> str:
            return await pool.run(hash_chain, job.seed, job.rounds)

        return await handle_all(jobs, compute)


Method = Callable[[Sequence[Job], int], Coroutine[Any, Any, list[str]]]

METHODS: list[tuple[str, Method]] = [
    ("blocking in the event loop", run_blocking),
    ("run_in_executor(ProcessPool)", run_executor),
    ("procpool.Pool.run", run_procpool),
]


# -- measuring ------------------------------------------------------------------------------------


async def heartbeat(lags: list[float], stop: asyncio.Event) -> None:
    """Sleep 1 ms until ``stop`` is set, appending how late each wake-up was (seconds) to ``lags``."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(HEARTBEAT_INTERVAL)
        lags.append(max(0.0, time.perf_counter() - start - HEARTBEAT_INTERVAL))


async def measure(name: str, method: Method, jobs: Sequence[Job], workers: int, expected: list[str]) -> Row:
    lags: list[float] = []
    stop = asyncio.Event()
    beating = asyncio.create_task(heartbeat(lags, stop))
    await asyncio.sleep(0)  # let the heartbeat start before the work does
    start = time.perf_counter()
    results = await method(jobs, workers)
    wall = time.perf_counter() - start
    # Stop it rather than cancel it: its pending wake-up may be the one that measures the worst stall.
    stop.set()
    await beating
    return Row(name, wall, lags, results == expected)


async def run_with_progress(jobs: Sequence[Job], workers: int, expected: list[str]) -> tuple[bool, procpool.PoolStats]:
    """The batch as one ``starmap`` with a progress bar: whether its results are right, and the
    pool's stats."""
    async with procpool.Pool(workers) as pool:
        results = await pool.starmap(hash_chain, [(job.seed, job.rounds) for job in jobs], progress=True)
        return results == expected, pool.stats()


def run_serial(jobs: Sequence[Job]) -> tuple[float, list[str]]:
    """The baseline: one job after the other, no event loop, no IO waits."""
    start = time.perf_counter()
    results = [hash_chain(job.seed, job.rounds) for job in jobs]
    return time.perf_counter() - start, results


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: always a lag that was really measured, even from a few samples."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def print_table(serial_wall: float, rows: Sequence[Row]) -> None:
    line = "{:<30} {:>7} {:>8} {:>9} {:>9} {:>9} {:>6}  {}"
    header = line.format("method", "wall", "speedup", "lag p50", "lag p99", "lag max", "beats", "correct")
    print(header)
    print("-" * len(header))
    print(line.format("serial (no event loop)", f"{serial_wall:.2f}s", "1.00x", "", "", "", "", "yes"))
    for row in rows:
        lags = (f"{1000 * percentile(row.lags, fraction):.2f}ms" for fraction in (0.50, 0.99, 1.0))
        speedup = f"{serial_wall / row.wall:.2f}x"
        correct = "yes" if row.correct else "NO"
        print(line.format(row.method, f"{row.wall:.2f}s", speedup, *lags, len(row.lags), correct))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status (0 when every method got the right results)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a small batch that runs in a second or two (for tests)")
    parser.add_argument("--uvloop", action="store_true", help="run the event loop on uvloop (if installed)")
    args = parser.parse_args(argv)

    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            parser.error("uvloop is not installed: pip install 'procpool[uvloop]'")
        loop_factory = uvloop.new_event_loop

    jobs = make_jobs(args.quick)
    workers = max(2, procpool.available_cpus())  # two at least, so there is always real concurrency to show
    io_ms = sorted(job.io_wait * 1000 for job in jobs)
    print(
        f"{len(jobs)} requests, each {io_ms[0]:.0f}-{io_ms[-1]:.0f} ms of IO then CPU work; {workers} worker processes;"
        f" heartbeat every {HEARTBEAT_INTERVAL * 1000:g} ms on {'uvloop' if args.uvloop else 'asyncio'}\n"
    )

    serial_wall, expected = run_serial(jobs)
    rows = []
    for name, method in METHODS:
        # A fresh event loop per method, so no state (threads, handles) carries over between them.
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            rows.append(runner.run(measure(name, method, jobs, workers, expected)))

    print_table(serial_wall, rows)
    print(
        "\nwall: includes starting and stopping the worker processes."
        "\nlag: how late the 1 ms heartbeat woke up (over all its wake-ups); beats: how many wake-ups it got."
        "\nA blocked loop shows few beats and one huge max lag: everything else on the loop waited that long."
    )

    print("\nThe same batch as one pool.starmap(..., progress=True):", flush=True)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        mapped_correct, stats = runner.run(run_with_progress(jobs, workers, expected))
    print(f"pool.stats(): {stats}")
    return 0 if all(row.correct for row in rows) and mapped_correct else 1


if __name__ == "__main__":  # required: worker processes re-import this module
    raise SystemExit(main())
