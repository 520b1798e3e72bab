"""Where a round trip's time goes: its latency, and the CPU time the parent and the workers spend
on it, for procpool and the raw-pipe reference side by side (scenario A's load: ``identity(i)``
awaited before the next call, 2 workers).

Usage: ``python -m benchmarks.roundtrip_cpu [--repeats N] [--calls N]``: each (pool, loop) runs in
a fresh interpreter, the pools alternating in each repeat; prints a Markdown table of medians
(min-max). CPU time is the process's (user and system, every thread) over the timed calls, so it
counts the wake-ups' kernel work too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from . import peers, workload
from .cell import LOOPS as LOOP_BACKENDS
from .peers import Call

POOLS = ("procpool", "rawpipe")  # peer names, started as scenario A starts them
LOOPS = ("asyncio", "uvloop")
WARM_UP = 300


async def _measure(call: Call, calls: int) -> dict[str, float]:
    import psutil

    for _ in range(WARM_UP):
        await call(workload.identity, 1)
    children = psutil.Process().children(recursive=True)
    before = [sum(child.cpu_times()[:2]) for child in children]
    latencies = []
    cpu = time.process_time()
    for i in range(calls):
        begin = time.perf_counter()
        await call(workload.identity, i)
        latencies.append(time.perf_counter() - begin)
    parent = time.process_time() - cpu
    workers = sum(sum(child.cpu_times()[:2]) for child in children) - sum(before)
    return {
        "latency_us": 1e6 * statistics.median(latencies),
        "parent_cpu_us": 1e6 * parent / calls,
        "workers_cpu_us": 1e6 * workers / calls,
    }


async def _one(pool: str, calls: int) -> dict[str, float]:
    peer = peers.load(pool)(2)
    call = await peer.start()
    try:
        return await _measure(call, calls)
    finally:
        await peer.close()


def _cell(pool: str, loop: str, calls: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.roundtrip_cpu", "--cell", pool, loop, str(calls)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--cell", nargs=3, metavar=("POOL", "LOOP", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        import anyio

        pool, loop, calls = args.cell
        backend, options = LOOP_BACKENDS[loop]
        print(json.dumps(anyio.run(_one, pool, int(calls), backend=backend, backend_options=options)))
        return
    figures: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for loop in LOOPS:
            for pool in POOLS:
                figures.setdefault((pool, loop), []).append(_cell(pool, loop, args.calls))
    print("| pool | loop | latency, µs | parent CPU per round trip, µs | workers' CPU per round trip, µs |")
    print("| --- | --- | --- | --- | --- |")
    for (pool, loop), runs in figures.items():
        cells = []
        for key in ("latency_us", "parent_cpu_us", "workers_cpu_us"):
            values = [run[key] for run in runs]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})")
        print(f"| {pool} | {loop} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
