"""procpool demo: what procpool adds over the standard library, side by side, measured in one run.

The standard library's way to run CPU-bound work from async code is
``await loop.run_in_executor(ProcessPoolExecutor(...), fn, *args)`` ("stdlib" below); procpool's
is ``await pool.run(fn, *args)``. This program runs the same scenarios through both, and prints
only what it measured in this run, including the figures where procpool loses:

1. The event loop stays responsive. A *heartbeat* coroutine sleeps 1 ms in a loop and records
   how late each wake-up is (its *lag*: latency every other client of a server would feel) while
   a batch of requests runs. Each request waits for some IO (``asyncio.sleep``, standing in for a
   database call) and then does 0.1-0.25 s of CPU work in Python (a SHA-256 hash chain, which
   holds the GIL). Running that work right in the coroutine ("blocking") is the contrast.
2. Speed, with the pool start apart from the steady state: how long until every worker has
   answered a call, how long the batch takes once they have, the round trip of a tiny call, and
   how long the pool takes to stop.
3. A timeout that stops the work: ``asyncio.wait_for`` gives up on a 2 s task after 0.3 s. Does
   the work go on in the worker, holding it (the next call waits), or is it stopped?
4. A crash fails one task, not the pool: one task kills its own worker (``os._exit``) while
   others run. What happens to the others, and to the next call?
5. A map with a progress bar (``pool.starmap(..., progress=True)``; tqdm's bar on a terminal
   with ``procpool[progress]`` installed, plain text otherwise), its results checked.

Both sides run the same code (the ``call`` each scenario gets is the only difference), each
scenario in a fresh event loop. Run it with ``make demo``, or
``python examples/demo.py [--quick] [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import math
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import procpool
from procpool import Pool  # imported here, as the stdlib's executor is above: pool start times the start alone

HEARTBEAT_INTERVAL = 0.001  # seconds
PROBE = 0.01  # seconds each call takes that checks a worker is up (see `every_worker_answered`)
LABEL = "{:<15}"  # the method column of every section
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does: the full run, or ``--quick`` (for tests)."""

    jobs: int  # requests in the batch of sections 1 and 2...
    base_rounds: int  # ...each base_rounds to base_rounds + 10 * step rounds of the hash chain
    step_rounds: int
    round_trips: int  # tiny calls, one after the other, for the round-trip figure
    burn: float  # seconds of CPU work the timeout scenario gives up on...
    timeout: float  # ...after this many seconds
    map_items: int  # items in the map of section 5...
    map_rounds: int  # ...each this many rounds of the hash chain


FULL = Sizes(jobs=16, base_rounds=175_000, step_rounds=25_000, round_trips=200, burn=2.0, timeout=0.3,
             map_items=1000, map_rounds=1000)  # fmt: skip
QUICK = Sizes(jobs=4, base_rounds=20_000, step_rounds=5_000, round_trips=50, burn=1.0, timeout=0.1,
              map_items=100, map_rounds=200)  # fmt: skip


# -- the work the workers do (module level, so the workers can import it) ------------------------


def hash_chain(seed: int, rounds: int) -> str:
    """CPU-bound work: SHA-256 applied ``rounds`` times, roughly 0.5-1 us per round.

    Hashing 32 bytes is too short for hashlib to release the GIL, so this holds it throughout,
    like any pure-Python computation would.
    """
    digest = seed.to_bytes(8, "little")
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def whoami(delay: float) -> int:
    """Sleep ``delay`` seconds, then return this worker's pid."""
    time.sleep(delay)
    return os.getpid()


def echo(x: int) -> int:
    return x


def burn(seconds: float, marker: str) -> int:
    """Hash for ``seconds``, then create the file ``marker``: proof the work ran to its end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        hash_chain(0, 1000)
    Path(marker).touch()
    return os.getpid()


def crash(after: float) -> NoReturn:
    """Die as a segfault or the OOM killer would end a worker: no exception, no cleanup."""
    time.sleep(after)
    os._exit(1)


def nap(seconds: float, x: int) -> int:
    time.sleep(seconds)
    return x


# -- the two ways to call a worker from async code -----------------------------------------------

Call = Callable[..., Awaitable[Any]]  # call(fn, *args) -> awaitable of fn(*args), run in a worker
Opener = Callable[[int], AbstractAsyncContextManager[Call]]


@asynccontextmanager
async def stdlib_pool(workers: int) -> AsyncIterator[Call]:
    """The standard library: a process pool executor, awaited through the event loop."""
    loop = asyncio.get_running_loop()
    # The usual way to write it: `with` shuts the executor down (and waits for it) on exit.
    with ProcessPoolExecutor(max_workers=workers) as executor:
        yield functools.partial(loop.run_in_executor, executor)


@asynccontextmanager
async def procpool_pool(workers: int) -> AsyncIterator[Call]:
    """procpool: the workers are started when ``async with`` returns, and stopped when it exits."""
    async with Pool(workers) as pool:
        yield pool.run


POOLS: list[tuple[str, Opener]] = [("stdlib", stdlib_pool), ("procpool", procpool_pool)]


async def every_worker_answered(call: Call, workers: int) -> None:
    """Return once each of the ``workers`` processes has answered a call.

    The calls sleep a little (``PROBE``), so that those sent together go to different workers.
    """
    seen: set[int] = set()
    while len(seen) < workers:
        seen.update(await asyncio.gather(*(call(whoami, PROBE) for _ in range(workers))))


# -- 1 and 2: the event loop's lag, and speed ----------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One request: wait ``io_wait`` seconds for IO, then run ``rounds`` of the hash chain."""

    seed: int
    rounds: int
    io_wait: float


def make_jobs(sizes: Sizes) -> list[Job]:
    """A fixed, varied batch, so every run (and every method) does the same work."""
    return [
        # The multipliers only scatter the sizes and waits: 0.1-0.25 s of CPU, 5-33 ms of IO.
        Job(seed=i, rounds=sizes.base_rounds + (i * 7 % 11) * sizes.step_rounds, io_wait=0.005 + (i * 3 % 8) * 0.004)
        for i in range(sizes.jobs)
    ]


async def handle_all(jobs: Sequence[Job], call: Call) -> list[str]:
    """Handle every job concurrently, as a server handles the requests it has in flight."""

    async def handle(job: Job) -> str:
        await asyncio.sleep(job.io_wait)  # the request's IO
        return str(await call(hash_chain, job.seed, job.rounds))

    return list(await asyncio.gather(*(handle(job) for job in jobs)))


async def call_inline(fn: Callable[..., Any], *args: Any) -> Any:
    """Blocking: the work runs on the event loop itself; nothing else runs on the loop meanwhile."""
    return fn(*args)


@dataclass(frozen=True)
class Row:
    """One method's figures for sections 1 and 2 (None: not applicable, as a blocking run's pool start)."""

    method: str
    start: float | None  # seconds from creating the pool until every worker has answered a call
    batch: float  # seconds for the batch of jobs, pool started
    round_trip: float | None  # median seconds of a tiny call
    stop: float | None  # seconds to stop the pool
    lags: list[float]  # the heartbeat's, from start to stop
    correct: bool


async def heartbeat(lags: list[float], stop: asyncio.Event) -> None:
    """Sleep 1 ms until ``stop`` is set, appending how late each wake-up was (seconds) to ``lags``."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(HEARTBEAT_INTERVAL)
        lags.append(max(0.0, time.perf_counter() - start - HEARTBEAT_INTERVAL))


async def measure(method: str, opener: Opener | None, jobs: Sequence[Job], workers: int, sizes: Sizes,
                  expected: list[str]) -> Row:  # fmt: skip
    """Start the pool, run the batch, time tiny calls and stop the pool, the heartbeat beating throughout."""
    lags: list[float] = []
    beating = asyncio.Event()
    heart = asyncio.create_task(heartbeat(lags, beating))
    await asyncio.sleep(0)  # let the heartbeat start before the work does
    if opener is None:
        begin = time.perf_counter()
        results = await handle_all(jobs, call_inline)
        start, batch, round_trip, stop = None, time.perf_counter() - begin, None, None
    else:
        created = time.perf_counter()
        async with opener(workers) as call:
            await every_worker_answered(call, workers)
            start = time.perf_counter() - created
            begin = time.perf_counter()
            results = await handle_all(jobs, call)
            batch = time.perf_counter() - begin
            trips = []
            for i in range(sizes.round_trips):
                begin = time.perf_counter()
                await call(echo, i)
                trips.append(time.perf_counter() - begin)
            round_trip = statistics.median(trips)
            stopping = time.perf_counter()
        stop = time.perf_counter() - stopping
    # Stop it rather than cancel it: its pending wake-up may be the one that measures the worst stall.
    beating.set()
    await heart
    return Row(method, start, batch, round_trip, stop, lags, results == expected)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: always a lag that was really measured, even from a few samples."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def print_lags(rows: Sequence[Row]) -> None:
    line = LABEL + " {:>9} {:>9} {:>9} {:>6}"
    header = line.format("method", "lag p50", "lag p99", "lag max", "beats")
    print(header)
    print("-" * len(header))
    for row in rows:
        lags = (f"{1000 * percentile(row.lags, fraction):.2f}ms" for fraction in (0.50, 0.99, 1.0))
        print(line.format(row.method, *lags, len(row.lags)))
    print(
        "lag: how late the 1 ms heartbeat woke up, over the whole run (pool start and stop included);"
        " beats: how many wake-ups it got.\nA blocked loop shows few beats and one huge max lag:"
        " everything else on the loop waited that long."
    )


def seconds(value: float | None, unit: str = "s", scale: float = 1.0, places: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{places}f}{unit}"


def ratio(stdlib: float | None, procpool: float | None) -> str:
    return "-" if stdlib is None or not procpool else f"{stdlib / procpool:.2f}x"


def print_speed(serial: float, rows: Sequence[Row], round_trips: int) -> None:
    line = LABEL + " {:>10} {:>7} {:>8} {:>10} {:>9}  {}"
    header = line.format("method", "pool start", "batch", "speedup", "call p50", "pool stop", "correct")
    print(header)
    print("-" * len(header))
    print(line.format("serial", "-", f"{serial:.2f}s", "1.00x", "-", "-", "yes"))
    for row in rows:
        print(
            line.format(
                row.method,
                seconds(row.start, places=3),
                seconds(row.batch),
                f"{serial / row.batch:.2f}x",
                seconds(row.round_trip, "ms", 1000),
                seconds(row.stop, places=3),
                "yes" if row.correct else "NO",
            )
        )
    by_method = {row.method: row for row in rows}
    std, pp = by_method["stdlib"], by_method["procpool"]
    figures = (ratio(std.start, pp.start), ratio(std.batch, pp.batch), "", ratio(std.round_trip, pp.round_trip))
    print(line.format("stdlib/procpool", *figures, ratio(std.stop, pp.stop), ""))
    print(
        "serial: the batch in a plain for loop (no event loop, no IO waits), the speedups' baseline.\n"
        "pool start: from creating the pool until each worker has answered a call (each call sleeps"
        f" {PROBE * 1000:g} ms).\nbatch: the requests, with the pool started (the steady state);"
        f" call p50: the median round trip of {round_trips} tiny calls, one after another.\n"
        "stdlib/procpool: stdlib's time over procpool's; above 1.00x procpool is faster, below it is slower."
    )


# -- 3: a timeout ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeoutOutcome:
    gave_up_after: float  # seconds until wait_for raised TimeoutError
    next_wait: float  # seconds the next call took
    same_worker: bool  # whether the worker that ran the timed-out work answered the next call
    finished: bool  # whether the timed-out work ran to its end anyway


async def timeout_scenario(opener: Opener, sizes: Sizes, marker: str) -> TimeoutOutcome:
    """With one worker: give up on ``burn`` after ``sizes.timeout``, then call again."""
    async with opener(1) as call:
        worker = await call(os.getpid)  # started, and its pid
        began = time.perf_counter()
        try:
            # The same asyncio.wait_for on both sides; with procpool, `pool.options(timeout=...).run`
            # stops the work as well, and counts the time the task waited in the queue.
            await asyncio.wait_for(call(burn, sizes.burn, marker), sizes.timeout)
        except TimeoutError:
            gave_up_after = time.perf_counter() - began
        else:
            raise RuntimeError("the work finished before its timeout")
        asked = time.perf_counter()
        next_worker = await call(os.getpid)
        next_wait = time.perf_counter() - asked
        # Wait until the work would have ended, had it gone on, before looking for its marker.
        await asyncio.sleep(max(0.0, began + sizes.burn + 0.25 - time.perf_counter()))
        return TimeoutOutcome(gave_up_after, next_wait, next_worker == worker, os.path.exists(marker))


def print_timeout(method: str, outcome: TimeoutOutcome) -> None:
    print(
        LABEL.format(method) + f" TimeoutError after {outcome.gave_up_after:.2f}s; the next call took"
        f" {outcome.next_wait:.2f}s, on {'the same' if outcome.same_worker else 'a new'} worker;"
        f" the timed-out work ran to its end: {'yes' if outcome.finished else 'no'}"
    )


# -- 4: a crash -----------------------------------------------------------------------------------


def outcome(result: object) -> str:
    return type(result).__name__ if isinstance(result, BaseException) else "returned"


async def crash_scenario(opener: Opener, workers: int, nap_for: float) -> tuple[str, list[str], str]:
    """One task kills its worker while ``2 * workers - 1`` others run or wait; then one more call.

    Returns what became of the crashing task, of each other task, and of the next call.
    """
    async with opener(workers) as call:
        await every_worker_answered(call, workers)
        results = await asyncio.gather(
            call(crash, nap_for / 6), *(call(nap, nap_for, i) for i in range(2 * workers - 1)), return_exceptions=True
        )
        try:
            await call(os.getpid)
        except Exception as error:
            next_call = outcome(error)
        else:
            next_call = "returned"
        return outcome(results[0]), [outcome(result) for result in results[1:]], next_call


def print_crash(method: str, crashing: str, others: list[str], next_call: str) -> None:
    counts = Counter(others)
    fates = "all returned" if counts == {"returned": len(others)} else ", ".join(f"{n} {f}" for f, n in counts.items())
    print(
        LABEL.format(method) + f" the crashing task: {crashing}; the {len(others)} others: {fates};"
        f" the next call: {next_call}"
    )


# -- 5: a map with progress -----------------------------------------------------------------------


async def map_stdlib(workers: int, pairs: list[tuple[int, int]]) -> tuple[float, list[str]]:
    """The stdlib has no async map: one run_in_executor per item, gathered (and no progress display)."""
    async with stdlib_pool(workers) as call:
        await every_worker_answered(call, workers)
        began = time.perf_counter()
        results = await asyncio.gather(*(call(hash_chain, *pair) for pair in pairs))
        return time.perf_counter() - began, list(results)


async def map_procpool(workers: int, pairs: list[tuple[int, int]]) -> tuple[float, list[str], procpool.PoolStats]:
    async with Pool(workers) as pool:
        await every_worker_answered(pool.run, workers)
        began = time.perf_counter()
        results = await pool.starmap(hash_chain, pairs, progress=True)  # chunked; the bar goes to stderr
        return time.perf_counter() - began, results, pool.stats()


# -- the run --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status (0 when every method got the right results)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds in all (for tests)")
    parser.add_argument("--uvloop", action="store_true", help="run the event loop on uvloop (if installed)")
    args = parser.parse_args(argv)

    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            parser.error("uvloop is not installed: pip install 'procpool[uvloop]'")
        loop_factory = uvloop.new_event_loop

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        # A fresh event loop per scenario, so no state (threads, handles) carries over between them.
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coroutine)

    sizes = QUICK if args.quick else FULL
    workers = max(2, procpool.available_cpus())  # two at least, so there is always real concurrency to show
    print(
        f"Python {platform.python_version()} on {'uvloop' if args.uvloop else 'asyncio'}; this machine has"
        f" {os.cpu_count()} CPUs, {procpool.available_cpus()} usable by this process; pools of {workers} workers.\n"
        f"stdlib:   await loop.run_in_executor(ProcessPoolExecutor(max_workers={workers}), fn, *args)"
        f" (workers started by {multiprocessing.get_start_method()}, multiprocessing's default here)\n"
        f"procpool: await pool.run(fn, *args), in async with procpool.Pool({workers}) as pool"
        " (workers started by forkserver, procpool's default)\n"
        "Every figure below was measured in this run.\n"
    )

    jobs = make_jobs(sizes)
    began = time.perf_counter()
    expected = [hash_chain(job.seed, job.rounds) for job in jobs]
    serial = time.perf_counter() - began
    rows = [run(measure("blocking", None, jobs, workers, sizes, expected))]
    rows += [run(measure(name, opener, jobs, workers, sizes, expected)) for name, opener in POOLS]
    io_ms = sorted(job.io_wait * 1000 for job in jobs)
    print(
        f"1. The event loop stays responsive: {len(jobs)} requests at once, each {io_ms[0]:.0f}-{io_ms[-1]:.0f} ms"
        " of IO then CPU work, while a heartbeat sleeps 1 ms in a loop."
    )
    print_lags(rows)

    print("\n2. Speed: the pool start apart from the steady state (the same runs as 1).")
    print_speed(serial, rows, sizes.round_trips)

    print(
        f"\n3. A timeout: asyncio.wait_for(call(work of {sizes.burn:g}s), {sizes.timeout:g}) on a pool of one"
        " worker, then the next call."
    )
    with tempfile.TemporaryDirectory() as markers:
        for name, opener in POOLS:
            print_timeout(name, run(timeout_scenario(opener, sizes, os.path.join(markers, name))))

    print(f"\n4. A crash: one of {2 * workers} tasks calls os._exit while the others run or wait; then one more call.")
    for name, opener in POOLS:
        print_crash(name, *run(crash_scenario(opener, workers, nap_for=0.3)))

    pairs = [(i, sizes.map_rounds) for i in range(sizes.map_items)]
    mapped = [hash_chain(*pair) for pair in pairs]
    print(f"\n5. A map: hash_chain over {len(pairs)} items, each {sizes.map_rounds} rounds.")
    wall, results = run(map_stdlib(workers, pairs))
    stdlib_correct = results == mapped
    print(
        LABEL.format("stdlib") + f" asyncio.gather of one run_in_executor per item: {wall:.2f}s;"
        f" results correct: {'yes' if stdlib_correct else 'NO'}; progress display: none",
        flush=True,  # before procpool's progress bar, which goes to stderr
    )
    wall, results, stats = run(map_procpool(workers, pairs))
    procpool_correct = results == mapped
    print(
        LABEL.format("procpool") + f" await pool.starmap(hash_chain, items, progress=True): {wall:.2f}s;"
        f" results correct: {'yes' if procpool_correct else 'NO'}; progress display: the bar above"
    )
    print(f"pool.stats(): {stats}  (its tasks: the map's chunks, and the calls that found each worker up)")
    return 0 if all(row.correct for row in rows) and stdlib_correct and procpool_correct else 1


if __name__ == "__main__":  # required: worker processes re-import this module
    raise SystemExit(main())
