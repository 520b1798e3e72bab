"""Throughput with worker recycling (``max_tasks_per_worker``) against none, as docs/reliability.md
reports it. Usage: ``python -m benchmarks.recycle [--tasks N] [--spin-ms X]``"""

from __future__ import annotations

import argparse
import time

import anyio

import procpool
from procpool._engine import _healing


def spin(ms: float) -> float:
    """Busy-wait ``ms`` milliseconds: a CPU-bound task of a known length."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass
    return ms


async def rate(tasks: int, ms: float, max_tasks: int | None) -> float:
    async with procpool.Pool(2, max_tasks_per_worker=max_tasks) as pool:
        await pool.map(spin, [0.0] * 50)
        started = time.perf_counter()
        await pool.map(spin, [ms] * tasks)
        return tasks / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--spin-ms", type=float, nargs="*", default=[0.0, 1.0, 5.0])
    parser.add_argument("--no-spare", action="store_true", help="measure without the warm spare")
    args = parser.parse_args()
    if args.no_spare:
        _healing.Healing._refill = lambda self: None  # type: ignore[method-assign]
    for ms in args.spin_ms:
        plain = anyio.run(rate, args.tasks, ms, None)
        recycled = anyio.run(rate, args.tasks, ms, 10)
        print(
            f"task {ms:g} ms: {plain:,.0f} tasks/s without recycling, {recycled:,.0f} with "
            f"max_tasks_per_worker=10: ratio {recycled / plain:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
