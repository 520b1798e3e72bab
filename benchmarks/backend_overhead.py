"""Per-task overhead of the two backends: `procpool.Pool` and `procpool.DaskPool`.

Two measures, with a trivial function so that only the overhead counts:

- latency: sequential awaited round trips, ``await pool.run(trivial, i)`` one after the other;
  median and p90 of the per-call times of every repeat, and the median of each repeat. The same
  for a plain asynchronous ``distributed.Client`` (``await client.submit(trivial, i, pure=False)``)
  on the same cluster, as the baseline of what Dask itself costs.
- throughput: ``pool.map(trivial, range(n), ordered=False)`` in items per second, with one item
  per task (what pipelining tasks hides of that latency) and with ``chunksize=CHUNK`` items per
  task (what batching hides).

The local side runs on ``Pool(2)``; the Dask side on a LocalCluster started here (2 worker
processes of one thread, on 127.0.0.1; its scheduler shares this process and event loop, as with
``DaskPool()``), or on the cluster at ``--dask ADDRESS``. A real cluster adds the network's round
trips to Dask's figures: run it with ``--dask`` against yours.

    python benchmarks/backend_overhead.py [--quick] [--uvloop] [--dask ADDRESS] [--output PATH]

Writes JSON to benchmarks/results/backend_overhead_<loop>[_cluster].json (or PATH) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster

import procpool

WORKERS = 2
CHUNK = 50
RESULTS = Path(__file__).resolve().parent / "results"


def trivial(x: int) -> int:
    return x


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median and p90 of a sample, in microseconds."""
    deciles = statistics.quantiles(seconds, n=10, method="inclusive")
    return {"median_us": 1e6 * statistics.median(seconds), "p90_us": 1e6 * deciles[-1]}


async def latency(call: Callable[[int], Awaitable[object]], calls: int, repeats: int) -> dict[str, Any]:
    for i in range(max(20, calls // 10)):  # warm up: connections, imports, caches in the workers
        await call(i)
    every_call: list[float] = []
    repeat_medians: list[float] = []
    for _ in range(repeats):
        times = []
        for i in range(calls):
            start = time.perf_counter()
            await call(i)
            times.append(time.perf_counter() - start)
        every_call.extend(times)
        repeat_medians.append(1e6 * statistics.median(times))
    return {**summarize(every_call), "repeat_medians_us": repeat_medians, "calls": len(every_call)}


async def map_rate(pool: procpool.Pool | procpool.DaskPool, items: int, repeats: int, chunksize: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        results = [y async for y in pool.map(trivial, range(items), ordered=False, chunksize=chunksize)]
        rates.append(len(results) / (time.perf_counter() - start))
    return statistics.median(rates)


async def measure_pool(
    pool: procpool.Pool | procpool.DaskPool, calls: int, repeats: int, map_items: int
) -> dict[str, Any]:
    return {
        "latency": await latency(lambda i: pool.run(trivial, i), calls, repeats),
        "throughput": {
            "items_per_repeat": map_items,
            "repeats": repeats,
            "median_items_per_s": await map_rate(pool, map_items, repeats, chunksize=1),
            f"median_items_per_s_chunksize_{CHUNK}": await map_rate(pool, map_items, repeats, chunksize=CHUNK),
        },
    }


@asynccontextmanager
async def dask_scheduler(address: str | None) -> AsyncIterator[str]:
    """``address``, or that of a LocalCluster started for the run."""
    if address:
        yield address
        return
    async with LocalCluster(
        n_workers=WORKERS,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        asynchronous=True,
    ) as cluster:
        yield cluster.scheduler_address


async def run_all(dask: str | None, calls: int, repeats: int, map_items: int) -> dict[str, dict[str, Any]]:
    results = {}
    async with procpool.Pool(WORKERS) as pool:
        results["Pool"] = await measure_pool(pool, calls, repeats, map_items)
    async with dask_scheduler(dask) as address:
        async with procpool.DaskPool(address) as dask_pool:
            results["DaskPool"] = await measure_pool(dask_pool, calls, repeats, map_items)
        async with Client(address, asynchronous=True, set_as_default=False) as client:
            results["Client"] = {
                "latency": await latency(lambda i: client.submit(trivial, i, pure=False), calls, repeats)
            }
    return results


def print_table(results: dict[str, dict[str, Any]]) -> None:
    line = "{:<10} {:>16} {:>10} {:>18} {:>12} {:>18}"
    print(line.format("backend", "round trip p50", "p90", "repeat medians", "map items/s", f"chunksize={CHUNK}"))
    for name, figures in results.items():
        latency = figures["latency"]
        throughput = figures.get("throughput", {})
        rates = [throughput.get(key) for key in ("median_items_per_s", f"median_items_per_s_chunksize_{CHUNK}")]
        medians = latency["repeat_medians_us"]
        print(
            line.format(
                name,
                f"{latency['median_us']:.0f} us",
                f"{latency['p90_us']:.0f} us",
                f"{min(medians):.0f}-{max(medians):.0f} us",
                *("-" if rate is None else f"{rate:.0f}" for rate in rates),
            )
        )
    print("(Client: a plain distributed.Client on the same cluster, the baseline of Dask's own cost)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few calls, to check that it runs")
    parser.add_argument("--uvloop", action="store_true", help="run the event loop on uvloop")
    parser.add_argument("--dask", metavar="ADDRESS", help="measure Dask on this cluster, not on a LocalCluster")
    parser.add_argument("--output", type=Path, help=f"where to write the JSON (default: in {RESULTS})")
    args = parser.parse_args(argv)
    calls, repeats, map_items = (50, 2, 100) if args.quick else (500, 5, 1000)

    loop = "uvloop" if args.uvloop else "asyncio"
    loop_factory = None
    if args.uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        results = runner.run(run_all(args.dask, calls, repeats, map_items))

    print_table(results)
    report = {
        "benchmark": "backend_overhead",
        "description": "sequential awaited round trips of a trivial function; map throughput",
        "workers": WORKERS,
        "dask_cluster": args.dask or "LocalCluster started by the benchmark, scheduler in its process",
        "loop": loop,
        "calls_per_repeat": calls,
        "repeats": repeats,
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "usable_cpus": procpool.available_cpus(),
            "load_average_1min_at_end": os.getloadavg()[0],
            "procpool": version("procpool"),
            "distributed": version("distributed"),
        },
        "results": results,
    }
    output = args.output or RESULTS / f"backend_overhead_{loop}{'_cluster' if args.dask else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":  # required: worker processes re-import this module
    raise SystemExit(main())
