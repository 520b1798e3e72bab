"""A producer/consumer pipeline: stages in separate processes, joined by ``procpool.Queue``.

    parent: source --> [numbers] --> 2 x factor --> [factored] --> 1 x classify --> [labelled] --> parent: sink

The parent feeds numbers in and collects the labelled results, awaiting the queues while its event
loop stays free; each stage is one or more ``procpool.Process`` children that read their input
queue with a plain ``for item in queue:`` loop and put their output on the next queue.

The end of the stream flows down the pipeline: when the source is done the parent closes the first
queue; the factor processes drain it and exit; once both have exited the parent closes the next
queue, and so on. Bounded queues give backpressure: a fast stage waits for a slow one instead of
filling memory.

Run it with ``python examples/pipeline.py [--count N] [--uvloop | --trio]``; it checks its own
results and exits with status 0 when they are right.
"""

from __future__ import annotations

import argparse
import collections
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

import procpool


def factorize(n: int) -> list[int]:
    """CPU-bound: the prime factors of ``n`` by trial division."""
    factors = []
    divisor = 2
    while divisor * divisor <= n:
        while n % divisor == 0:
            factors.append(divisor)
            n //= divisor
        divisor += 1
    if n > 1:
        factors.append(n)
    return factors


def factor_stage(source: procpool.Queue[int], sink: procpool.Queue[tuple[int, list[int]]]) -> None:
    """Stage 1 (runs in a child): each number with its prime factors."""
    for n in source:  # blocking, in the child; ends when the queue is closed and drained
        sink.put((n, factorize(n)))


def classify_stage(source: procpool.Queue[tuple[int, list[int]]], sink: procpool.Queue[tuple[int, str]]) -> None:
    """Stage 2 (runs in a child): a label per number, after checking the factors."""
    for n, factors in source:
        if math.prod(factors) != n:
            label = "WRONG"
        elif len(factors) == 1:
            label = "prime"
        elif len(set(factors)) == 1:
            label = "prime power"
        else:
            label = "composite"
        sink.put((n, label))


async def stage(
    workers: int, target: Callable[..., None], source: procpool.Queue[Any], sink: procpool.Queue[Any]
) -> None:
    """Run ``workers`` processes of a stage until its input ends, then close its output."""
    async with anyio.create_task_group() as group:
        for _ in range(workers):
            group.start_soon(_run_process, target, source, sink)
    sink.close()  # every process of this stage is done: the next stage may finish


async def _run_process(target: Callable[..., None], *args: Any) -> None:
    async with procpool.Process(target, args) as process:
        pass  # joined on exit
    if process.exitcode != 0:
        raise RuntimeError(f"{target.__name__} exited with code {process.exitcode}")


async def run_pipeline(numbers: Sequence[int]) -> dict[int, str]:
    raw: procpool.Queue[int] = procpool.Queue(maxsize=64)
    factored: procpool.Queue[tuple[int, list[int]]] = procpool.Queue(maxsize=64)
    labelled: procpool.Queue[tuple[int, str]] = procpool.Queue(maxsize=64)
    results: dict[int, str] = {}

    async def source() -> None:
        for n in numbers:
            await raw.put(n)  # waits (without blocking the loop) while the stage behind is busy
        raw.close()

    async with anyio.create_task_group() as group:
        group.start_soon(source)
        group.start_soon(stage, 2, factor_stage, raw, factored)
        group.start_soon(stage, 1, classify_stage, factored, labelled)
        async for n, label in labelled:  # the sink: ends when the last stage has closed its output
            results[n] = label
    return results


def expected_label(n: int) -> str:
    factors = factorize(n)
    return "prime" if len(factors) == 1 else "prime power" if len(set(factors)) == 1 else "composite"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000, help="how many numbers go through the pipeline")
    loop = parser.add_mutually_exclusive_group()
    loop.add_argument("--uvloop", action="store_true", help="run the parent on uvloop")
    loop.add_argument("--trio", action="store_true", help="run the parent on trio")
    args = parser.parse_args(argv)

    numbers = [10**7 + i for i in range(args.count)]
    backend, options = ("trio", {}) if args.trio else ("asyncio", {"use_uvloop": args.uvloop})
    started = time.perf_counter()
    results = anyio.run(run_pipeline, numbers, backend=backend, backend_options=options)
    elapsed = time.perf_counter() - started

    counts = collections.Counter(results.values())
    correct = sorted(results) == numbers and all(results[n] == expected_label(n) for n in numbers)
    print(f"{len(results)} numbers through 3 stages (2 factor + 1 classify processes) in {elapsed:.2f}s")
    for label, count in sorted(counts.items()):
        print(f"  {label}: {count}")
    print("correct" if correct else "WRONG RESULTS")
    return 0 if correct else 1


if __name__ == "__main__":  # required: child processes re-import this module
    raise SystemExit(main())
