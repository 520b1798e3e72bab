"""The soak driver: many rounds of mixed tasks through one pool, with the parent's resources
sampled as it goes. tests/test_soak.py runs a short form; ``make soak`` the long one (200,000
tasks), printing the figures that docs/reliability.md records.

Each round submits `ROUND` tasks at once and waits for all of them: mostly tiny calls, and also
large payloads, calls that raise, calls cancelled while queued and one cancelled while running,
and calls whose ``timeout`` passes while queued or while running (the latter two kill a worker).
Every task's outcome is checked against its kind, so nothing may be lost or misdelivered.

Usage: ``python tests/soak.py [--tasks N] [--workers N] [--backend asyncio|uvloop|trio]``
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import threading
import time
from typing import Any

import anyio
import psutil

import procpool
import workfns

ROUND = 1000
_PAYLOAD = 100_000  # bytes in each large-payload task, both ways
_PER_ROUND = {"large": 20, "raising": 20, "cancelled": 10, "expired_queued": 8, "expired_running": 2}
_SAMPLES = 40  # resource samples over a run (at most one per round)
_SETTLE_SECONDS = 2.0  # the longest a sample waits for a killed worker's replacement (`_replacements_done`)


@dataclasses.dataclass
class Sample:
    tasks: int
    seconds: float
    rss: int  # bytes
    fds: int
    threads: int
    children: int


@dataclasses.dataclass
class Report:
    tasks: int = 0
    outcomes: dict[str, int] = dataclasses.field(default_factory=dict)
    lost: int = 0  # tasks that ended with an outcome their kind does not allow
    samples: list[Sample] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def drift(self, warm_up: float = 0.2) -> dict[str, tuple[int, int]]:
        """Per resource: (last - first, max - min) over the samples after the first ``warm_up``."""
        kept = self.samples[int(len(self.samples) * warm_up) :] or self.samples
        drift = {}
        for name in ("rss", "fds", "threads", "children"):
            values = [getattr(sample, name) for sample in kept]
            drift[name] = (values[-1] - values[0], max(values) - min(values))
        return drift

    def table(self) -> str:
        lines = [
            f"tasks run: {self.tasks} in {self.seconds:.1f} s ({self.tasks / max(self.seconds, 1e-9):,.0f}/s); "
            f"tasks lost: {self.lost}",
            "outcomes: " + ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items())),
            "",
            f"{'tasks':>8} {'seconds':>8} {'RSS MiB':>8} {'fds':>4} {'threads':>7} {'children':>8}",
        ]
        for s in self.samples:
            lines.append(
                f"{s.tasks:>8} {s.seconds:>8.1f} {s.rss / 2**20:>8.1f} {s.fds:>4} {s.threads:>7} {s.children:>8}"
            )
        lines.append("")
        lines.append("drift after the first 20% (last - first / max - min):")
        for name, (net, spread) in self.drift().items():
            if name == "rss":
                lines.append(f"  RSS: {net / 2**20:+.1f} MiB / {spread / 2**20:.1f} MiB")
            else:
                lines.append(f"  {name}: {net:+d} / {spread}")
        return "\n".join(lines)


def sample(tasks: int, started: float) -> Sample:
    me = psutil.Process()
    return Sample(
        tasks=tasks,
        seconds=time.perf_counter() - started,
        rss=me.memory_info().rss,
        fds=len(os.listdir("/proc/self/fd")),
        threads=threading.active_count(),
        children=_children(),
    )


def _children() -> int:
    return sum(1 for c in psutil.Process().children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE)


async def _replacements_done(report: Report) -> None:
    """Wait (a little) until as many processes run as at the busiest sample so far: each round
    kills a worker, and its replacement and the pool's next warm spare, with their descriptors,
    may still be starting when the round ends (on a loaded machine, for some hundred ms). A
    sample taken then would show a drop that is no leak."""
    most = max((s.children for s in report.samples), default=0)
    with anyio.move_on_after(_SETTLE_SECONDS):
        while _children() < most:
            await anyio.sleep(0.01)


def _check(report: Report, kind: str, task: procpool.Task[Any], expected: Any) -> None:
    """Count the task's outcome; a task whose outcome its kind does not allow is lost."""
    error = None if task.cancelled() else task.exception()
    if task.cancelled():
        outcome = "cancelled"
    elif error is not None:
        outcome = type(error).__name__
    else:
        outcome = "ok" if task.result() == expected else "WRONG RESULT"
    allowed = {
        "tiny": {"ok"},
        "large": {"ok"},
        "raising": {"ValueError"},
        "cancelled": {"cancelled"},
        "cancelled_running": {"cancelled"},
        "expired_queued": {"TimeoutError", "ok"},  # it may start before its deadline
        "expired_running": {"TimeoutError"},
    }[kind]
    report.count(f"{kind}:{outcome}")
    if outcome not in allowed:
        report.lost += 1


async def _round(pool: procpool.Pool, report: Report, base: int) -> None:
    tasks: list[tuple[str, procpool.Task[Any], Any]] = []
    payload = b"x" * _PAYLOAD
    # A long task that is cancelled once it runs: its worker is killed and replaced.
    running = pool.submit(workfns.sleep_and_return, 30)
    tasks.append(("cancelled_running", running, None))
    slow = pool.options(timeout=0.05)
    for _ in range(_PER_ROUND["expired_running"]):
        tasks.append(("expired_running", slow.submit(workfns.sleep_and_return, 30), None))
    tiny = ROUND - 1 - sum(_PER_ROUND.values())
    specials = [kind for kind, count in _PER_ROUND.items() if kind != "expired_running" for _ in range(count)]
    spacing = max(1, tiny // max(1, len(specials)))
    for i in range(tiny):
        n = base + i
        tasks.append(("tiny", pool.submit(workfns.square, n), n * n))
        if i % spacing == 0 and specials:
            kind = specials.pop()
            if kind == "large":
                tasks.append((kind, pool.submit(workfns.identity, payload), payload))
            elif kind == "raising":
                tasks.append((kind, pool.submit(workfns.raise_value_error, str(n)), None))
            elif kind == "cancelled":
                task = pool.submit(workfns.square, n)
                task.cancel()
                tasks.append((kind, task, None))
            else:  # expired_queued: a deadline far shorter than the queue ahead of it
                tasks.append((kind, pool.options(timeout=0.0005).submit(workfns.square, n), n * n))
    with anyio.fail_after(60):
        while not running.running():
            await anyio.sleep(0.001)
        running.cancel()
        async for _ in procpool.as_completed(task for _, task, _ in tasks):
            pass
    for kind, task, expected in tasks:
        _check(report, kind, task, expected)
    report.tasks += len(tasks)


async def run(tasks: int, workers: int = 2, *, progress: bool = False) -> Report:
    """Run about ``tasks`` tasks in rounds of `ROUND`; the resources sampled along the way."""
    report = Report()
    rounds = max(1, tasks // ROUND)
    every = max(1, rounds // _SAMPLES)
    started = time.perf_counter()
    async with procpool.Pool(workers) as pool:
        for number in range(rounds):
            await _round(pool, report, number * ROUND)
            if number % every == 0 or number == rounds - 1:
                await _replacements_done(report)
                gc.collect()
                report.samples.append(sample(report.tasks, started))
                if progress:
                    s = report.samples[-1]
                    print(f"  {s.tasks:>8} tasks  {s.seconds:6.1f} s  RSS {s.rss / 2**20:.1f} MiB", flush=True)
        assert await pool.map(workfns.square, range(100)) == [i * i for i in range(100)]  # healthy at the end
    report.seconds = time.perf_counter() - started
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", choices=("asyncio", "uvloop", "trio"), default="asyncio")
    args = parser.parse_args()
    backend, options = ("asyncio", {"use_uvloop": True}) if args.backend == "uvloop" else (args.backend, {})
    print(f"soak: {args.tasks} tasks, {args.workers} workers, {args.backend}", flush=True)
    report = anyio.run(lambda: run(args.tasks, args.workers, progress=True), backend=backend, backend_options=options)
    print(report.table())
    raise SystemExit(1 if report.lost else 0)


if __name__ == "__main__":
    main()
