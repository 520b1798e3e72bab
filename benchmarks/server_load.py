"""Server load test: one CPU-bound endpoint written four ways, under uvicorn, under load.

The same FastAPI endpoint (``GET /cpu``: a SHA-256 hash chain, ~45 ms of pure-Python-speed work
that holds the GIL) is served four ways, each by its own uvicorn process on 127.0.0.1:

- ``sync``: a plain ``def`` endpoint, which FastAPI runs in its thread pool (the GIL serialises it);
- ``blocking``: an ``async def`` endpoint that does the work on the event loop itself;
- ``executor``: ``await loop.run_in_executor(ProcessPoolExecutor(N), ...)``;
- ``procpool``: ``await pool.run(...)`` with the pool from ``procpool.integrations.fastapi``.

This script (a separate process from the server) drives each one: first ``GET /health`` alone
(its idle latency), then a closed loop of ``--concurrency`` clients on ``/cpu`` for ``--duration``
seconds while ``/health`` is probed every 20 ms on a schedule (open loop: a probe is timed from
when it was due, so a stalled server cannot hide its stalls by delaying the probes). It reports
requests per second and p50/p99 latency of ``/cpu``, p99 of ``/health`` under load and idle,
the median of ``--repeats`` runs, and writes everything to ``benchmarks/results/server_load.json``.

Other work on the machine skews every figure, so the script measures how much CPU other processes
used during each run and redoes a run that shared the machine (``--max-background``).

Run: ``python benchmarks/server_load.py`` (about 5 minutes on a quiet machine), or ``--quick`` for
a smoke run. It needs ``pip install -e '.[examples]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn
from fastapi import FastAPI

import procpool
from procpool.integrations.fastapi import PoolDep, pool_lifespan

VARIANTS = ("sync", "blocking", "executor", "procpool")
RESULTS = Path(__file__).resolve().parent / "results" / "server_load.json"
PROBE_INTERVAL = 0.02  # seconds between /health probes


def hash_chain(rounds: int) -> str:
    """The CPU-bound work: SHA-256 applied ``rounds`` times (too little data for hashlib to release the GIL)."""
    digest = b"procpool"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


# -- the server: one variant per process ----------------------------------------------------------


def create_app(variant: str, workers: int, rounds: int) -> FastAPI:
    """The FastAPI app for one variant: ``/cpu`` written that way, and ``/health``."""
    if variant == "sync":
        app = FastAPI()

        @app.get("/cpu")
        def cpu_sync() -> str:  # FastAPI runs a plain def in its thread pool
            return hash_chain(rounds)

    elif variant == "blocking":
        app = FastAPI()

        @app.get("/cpu")
        async def cpu_blocking() -> str:  # runs on the event loop: nothing else runs meanwhile
            return hash_chain(rounds)

    elif variant == "executor":

        @asynccontextmanager
        async def executor_lifespan(app: FastAPI) -> AsyncIterator[None]:
            with ProcessPoolExecutor(max_workers=workers) as executor:
                app.state.executor = executor
                yield

        app = FastAPI(lifespan=executor_lifespan)

        @app.get("/cpu")
        async def cpu_executor() -> str:
            loop = asyncio.get_running_loop()
            result: str = await loop.run_in_executor(app.state.executor, hash_chain, rounds)
            return result

    elif variant == "procpool":
        app = FastAPI(lifespan=pool_lifespan(workers))

        @app.get("/cpu")
        async def cpu_procpool(pool: PoolDep) -> str:
            return await pool.run(hash_chain, rounds)

    else:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(variant: str, workers: int, rounds: int) -> None:
    """Serve one variant on a free port of 127.0.0.1 (uvicorn logs which) until SIGTERM."""
    # Keep-alive longer than any run: a connection the server closes while the client reuses it
    # fails the request (the blocking variant leaves many connections idle for seconds).
    app = create_app(variant, workers, rounds)
    uvicorn.run(app, host="127.0.0.1", port=0, access_log=False, timeout_keep_alive=300)


# -- the load generator -----------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: always a value that was really measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True)
class Run:
    """The figures of one run of one variant (latencies in milliseconds)."""

    variant: str
    requests_per_second: float
    cpu_p50_ms: float
    cpu_p99_ms: float
    cpu_requests: int
    health_idle_p50_ms: float
    health_idle_p99_ms: float
    health_load_p50_ms: float
    health_load_p99_ms: float
    health_probes: int
    background_cpus: float  # CPUs that other processes on the machine used meanwhile, on average


async def probe_health(client: httpx.AsyncClient, seconds: float) -> list[float]:
    """``GET /health`` every PROBE_INTERVAL for ``seconds``; each latency is timed from when it was due."""
    latencies: list[float] = []

    async def probe(due: float) -> None:
        response = await client.get("/health")
        response.raise_for_status()
        latencies.append(time.perf_counter() - due)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as probes:
        for number in range(int(seconds / PROBE_INTERVAL)):
            due = start + number * PROBE_INTERVAL
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            probes.create_task(probe(due))
    return latencies


async def load_cpu(client: httpx.AsyncClient, concurrency: int, seconds: float) -> tuple[list[float], float]:
    """``concurrency`` clients calling ``/cpu`` back to back for ``seconds``.

    Returns the latencies of the requests sent in that time, and the time until the last of them
    answered. Any answer but 200 OK fails the run.
    """
    latencies: list[float] = []
    start = time.perf_counter()
    stop_sending = start + seconds

    async def client_loop() -> None:
        while time.perf_counter() < stop_sending:
            sent = time.perf_counter()
            response = await client.get("/cpu")
            response.raise_for_status()
            latencies.append(time.perf_counter() - sent)

    async with asyncio.TaskGroup() as clients:
        for _ in range(concurrency):
            clients.create_task(client_loop())
    return latencies, time.perf_counter() - start


class BackgroundMeter:
    """How much CPU the rest of the machine uses while we measure: on a shared machine, a run that
    competed with other work for the CPUs says little about the server, so such runs are redone.

    The machine's busy CPU time less our own (this process, the server and its descendants).
    """

    def __init__(self, server_pid: int) -> None:
        self._server = psutil.Process(server_pid)
        self._started = time.perf_counter()
        self._start = self._others()

    def _others(self) -> float:
        times = psutil.cpu_times()
        busy: float = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        own = [psutil.Process(), self._server, *self._server.children(recursive=True)]
        for process in own:
            with contextlib.suppress(psutil.Error):
                cpu = process.cpu_times()
                busy -= cpu.user + cpu.system
        return busy

    def cpus(self) -> float:
        """The CPUs used by other processes since this meter was created, on average."""
        return max(0.0, self._others() - self._start) / (time.perf_counter() - self._started)


async def measure(url: str, variant: str, args: argparse.Namespace, meter: BackgroundMeter) -> Run:
    """Warm the server up, probe it idle, then load it; the figures of this run."""
    concurrency, duration = args.concurrency, args.duration
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    timeout = httpx.Timeout(120)
    async with (
        httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as load_client,
        httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as probe_client,
    ):
        await load_cpu(load_client, concurrency, args.warmup)  # workers, connections, caches
        idle_latencies = await probe_health(probe_client, args.idle)
        async with asyncio.TaskGroup() as group:
            load = group.create_task(load_cpu(load_client, concurrency, duration))
            probes = group.create_task(probe_health(probe_client, duration))
    cpu_latencies, elapsed = load.result()
    health_latencies = probes.result()
    ms = 1000
    return Run(
        variant=variant,
        requests_per_second=len(cpu_latencies) / elapsed,
        cpu_p50_ms=percentile(cpu_latencies, 0.50) * ms,
        cpu_p99_ms=percentile(cpu_latencies, 0.99) * ms,
        cpu_requests=len(cpu_latencies),
        health_idle_p50_ms=percentile(idle_latencies, 0.50) * ms,
        health_idle_p99_ms=percentile(idle_latencies, 0.99) * ms,
        health_load_p50_ms=percentile(health_latencies, 0.50) * ms,
        health_load_p99_ms=percentile(health_latencies, 0.99) * ms,
        health_probes=len(health_latencies),
        background_cpus=meter.cpus(),
    )


class ServerProcess:
    """``python server_load.py --serve VARIANT`` in a child process."""

    def __init__(self, variant: str, workers: int, rounds: int) -> None:
        command = [sys.executable, __file__, "--serve", variant, "--workers", str(workers), "--rounds", str(rounds)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log: list[str] = []

    def wait_until_ready(self, timeout: float = 60) -> str:
        """Read the server's log until it says where it listens; its URL."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        url = None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.log.append(line)
            if match := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line):
                url = match.group(1)
            if url and "Application startup complete" in "".join(self.log):
                return url
        raise RuntimeError("the server did not start:\n" + "".join(self.log))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


def run_variant(variant: str, workers: int, rounds: int, args: argparse.Namespace) -> Run:
    """Start a server for ``variant``, measure it, stop it."""
    server = ServerProcess(variant, workers, rounds)
    try:
        url = server.wait_until_ready()
        return asyncio.run(measure(url, variant, args, BackgroundMeter(server.process.pid)))
    finally:
        server.stop()


# -- reporting --------------------------------------------------------------------------------------


def median_run(runs: Sequence[Run]) -> dict[str, float]:
    """Each figure's median over the runs."""
    fields = [name for name in asdict(runs[0]) if name != "variant"]
    return {name: statistics.median(getattr(run, name) for run in runs) for name in fields}


def print_table(medians: dict[str, dict[str, float]]) -> None:
    line = "{:<10} {:>7} {:>9} {:>9} {:>17} {:>17} {:>10} {:>11}"
    header = line.format(
        "variant", "req/s", "cpu p50", "cpu p99", "health p99 idle", "health p99 load", "load/idle", "other CPUs"
    )
    print(header)
    print("-" * len(header))
    for variant, figures in medians.items():
        print(
            line.format(
                variant,
                f"{figures['requests_per_second']:.1f}",
                f"{figures['cpu_p50_ms']:.0f} ms",
                f"{figures['cpu_p99_ms']:.0f} ms",
                f"{figures['health_idle_p99_ms']:.1f} ms",
                f"{figures['health_load_p99_ms']:.1f} ms",
                f"{figures['health_load_p99_ms'] / figures['health_idle_p99_ms']:.1f}x",
                f"{figures['background_cpus']:.2f}",
            )
        )


def machine() -> dict[str, Any]:
    return {
        "cpus_usable": procpool.available_cpus(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: metadata.version(name) for name in ("procpool", "fastapi", "uvicorn", "httpx", "anyio")},
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant; the medians are reported")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of /health probes before the load")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    parser.add_argument("--concurrency", type=int, default=4, help="clients calling /cpu back to back")
    parser.add_argument("--rounds", type=int, default=60_000, help="hash rounds per /cpu request")
    parser.add_argument("--workers", type=int, default=None, help="pool/executor workers (default: usable CPUs)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    parser.add_argument(
        "--max-background",
        type=float,
        default=0.1,
        help="redo a run during which other processes used more CPUs than this, on average",
    )
    parser.add_argument("--attempts", type=int, default=10, help="tries per run before keeping a busy one")
    parser.add_argument("--pause", type=float, default=20.0, help="seconds to wait before trying a busy run again")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 repeat, 2 s of load, 1 s idle")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)  # the server side
    args = parser.parse_args(argv)
    workers = args.workers or procpool.available_cpus()
    if args.serve:
        serve(args.serve, workers, args.rounds)
        return 0
    if args.quick:
        args.repeats, args.duration, args.idle = 1, 2.0, 1.0
    # Stopped by SIGTERM, stop the server of the run in progress too (`finally` in run_variant).
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    runs: dict[str, list[Run]] = {variant: [] for variant in args.variants}
    for repeat in range(args.repeats):
        for variant in args.variants:  # interleaved, so a slow spell of the machine hits every variant
            for attempt in range(1, args.attempts + 1):
                run = run_variant(variant, workers, args.rounds, args)
                print(
                    f"run {repeat + 1}/{args.repeats} {variant}: {run.requests_per_second:.1f} req/s "
                    f"(other processes used {run.background_cpus:.2f} CPUs)",
                    flush=True,
                )
                if run.background_cpus <= args.max_background or attempt == args.attempts:
                    break
                print(f"  the machine was busy: measuring {variant} again in {args.pause:g} s", flush=True)
                time.sleep(args.pause)
            runs[variant].append(run)
    medians = {variant: median_run(variant_runs) for variant, variant_runs in runs.items()}

    print()
    print_table(medians)
    summary: dict[str, Any] = {}
    if "sync" in medians and "procpool" in medians:
        procpool_figures = medians["procpool"]
        summary = {
            "procpool_vs_sync_throughput": procpool_figures["requests_per_second"]
            / medians["sync"]["requests_per_second"],
            "procpool_health_p99_load_over_idle": procpool_figures["health_load_p99_ms"]
            / procpool_figures["health_idle_p99_ms"],
        }
        print(
            f"\nprocpool vs sync def: {summary['procpool_vs_sync_throughput']:.2f}x the requests/s; procpool's "
            f"/health p99 under load is {summary['procpool_health_p99_load_over_idle']:.1f}x its idle p99"
        )
    results = {
        "command": "python benchmarks/server_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "parameters": {
            "repeats": args.repeats,
            "duration_s": args.duration,
            "idle_s": args.idle,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "workers": workers,
            "probe_interval_s": PROBE_INTERVAL,
            "max_background_cpus": args.max_background,
        },
        "medians": medians,
        "summary": summary,
        "runs": {variant: [asdict(run) for run in variant_runs] for variant, variant_runs in runs.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {args.output}")
    return 0


if __name__ == "__main__":  # required: worker processes re-import this module
    raise SystemExit(main())
