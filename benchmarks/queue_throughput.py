"""Parent-side queue throughput: how fast async code in the parent takes items that children put.

``--producers`` processes (default 1, so that on a small machine the parent has a CPU of its own)
put ``--items`` small items (a tuple with an int and 100 bytes) as fast as
they can; the parent takes them one by one from async code. Compared:

- ``procpool.Queue``: ``await q.get()`` (asyncio, uvloop and trio): waits on the socket's
  readiness in the event loop, no thread;
- ``multiprocessing.Queue`` read through ``loop.run_in_executor(None, q.get)``: one thread hop per item;
- aioprocessing's ``AioQueue.coro_get()``: the same, through aioprocessing's executor.

The producers of every method start with the same start method (forkserver) and wait for a go
signal, so process start-up is not timed: the clock runs from "go" to the last item taken. Each
method runs ``--repeats`` times; the table shows the median.

Run: ``pip install -e '.[bench]'`` then ``python benchmarks/queue_throughput.py`` (or
``python -m benchmarks.queue_throughput``; ``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

import procpool

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.machine import describe_machine

PAYLOAD = b"x" * 100
CONTEXT = multiprocessing.get_context("forkserver")


def produce(q: Any, go: Any, count: int) -> None:
    """Runs in a producer: wait for the go signal, then put ``count`` items."""
    go.wait()
    for i in range(count):
        q.put((i, PAYLOAD))


# -- one timed run per method: each returns the seconds from "go" to the last item taken ----------


async def run_procpool(items: int, producer_count: int) -> float:
    q: procpool.Queue[tuple[int, bytes]] = procpool.Queue()
    go = procpool.Event()
    producers = [procpool.Process(produce, (q, go, items // producer_count)) for _ in range(producer_count)]
    for producer in producers:
        await producer.start()
    await anyio.sleep(0.2)  # let the producers reach go.wait()
    started = time.perf_counter()
    go.set()
    for _ in range(items):
        await q.get()
    elapsed = time.perf_counter() - started
    for producer in producers:
        await producer.join()
    return elapsed


async def _run_threaded(items: int, producer_count: int, q: Any, get: Callable[[], Awaitable[Any]]) -> float:
    go = CONTEXT.Event()
    producers = [CONTEXT.Process(target=produce, args=(q, go, items // producer_count)) for _ in range(producer_count)]
    for producer in producers:
        producer.start()
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    go.set()
    for _ in range(items):
        await get()
    elapsed = time.perf_counter() - started
    for producer in producers:
        producer.join()
    return elapsed


async def run_mp_executor(items: int, producer_count: int) -> float:
    q = CONTEXT.Queue()
    loop = asyncio.get_running_loop()
    return await _run_threaded(items, producer_count, q, lambda: loop.run_in_executor(None, q.get))


async def run_aioprocessing(items: int, producer_count: int) -> float:
    import aioprocessing  # the `bench` extra

    q = aioprocessing.AioQueue(context=CONTEXT)
    return await _run_threaded(items, producer_count, q, q.coro_get)


Method = tuple[str, Callable[[int, int], Awaitable[float]], str, dict[str, Any]]

METHODS: list[Method] = [
    ("procpool.Queue  await get()  [asyncio]", run_procpool, "asyncio", {}),
    ("procpool.Queue  await get()  [uvloop]", run_procpool, "asyncio", {"use_uvloop": True}),
    ("procpool.Queue  await get()  [trio]", run_procpool, "trio", {}),
    ("multiprocessing.Queue + run_in_executor", run_mp_executor, "asyncio", {}),
    ("aioprocessing AioQueue.coro_get()", run_aioprocessing, "asyncio", {}),
]


def machine() -> str:
    info = describe_machine()
    return f"{info['cpu_model']}, {info['usable_cpus']} usable CPUs, Linux {info['kernel']}, Python {info['python']}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=20_000, help="items per run (default 20000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per method; the median is reported")
    parser.add_argument("--producers", type=int, default=1, help="producer processes (default 1)")
    parser.add_argument("--quick", action="store_true", help="2000 items, 2 repeats")
    args = parser.parse_args(argv)
    items, repeats = (2_000, 2) if args.quick else (args.items, args.repeats)

    print(f"{items} items of ~110 bytes from {args.producers} producer process(es); median of {repeats} runs")
    print(f"machine: {machine()}\n")
    line = "{:<42} {:>12} {:>12} {:>8}"
    print(line.format("method", "items/s", "us/item", "vs mp"))
    rows = []
    for name, run, backend, options in METHODS:
        timings = [
            anyio.run(run, items, args.producers, backend=backend, backend_options=options) for _ in range(repeats)
        ]
        rows.append((name, items / statistics.median(timings)))
    baseline = next(rate for name, rate in rows if name.startswith("multiprocessing"))
    for name, rate in rows:
        print(line.format(name, f"{rate:,.0f}", f"{1e6 / rate:.1f}", f"{rate / baseline:.1f}x"))
    print(f"\nreproduce: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":  # required: the producers re-import this module
    raise SystemExit(main())
