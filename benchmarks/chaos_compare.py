"""The same chaos scenario against procpool, ProcessPoolExecutor, loky and pebble.

Each pool gets ``--tasks`` small CPU tasks (a few ms each) on ``--workers`` workers, all submitted
at once. While they run, a killer thread SIGKILLs a random worker that is running a task, every
few milliseconds (uniform between ``--kill-min-ms`` and ``--kill-max-ms``), until every task has
an outcome. Each task appends ``index pid`` to a log file when it starts, so afterwards every
failure can be judged: a task that failed after starting in a worker the killer killed failed
for a reason; any other failure is collateral (the pool failed a task it did not need to).
Tasks without an outcome ``--hang-timeout`` seconds after the killer stops count as hangs.
Finally the same pool object is given a few fresh tasks: it is usable if they all succeed.

The judgement errs against the pools, equally for all: a kill that lands after a worker took a task
but before the task's first line logged its start makes that task's failure count as collateral.

Run: ``pip install -e '.[bench]'`` then ``make chaos-compare`` (or
``python -m benchmarks.chaos_compare``). Results go to ``benchmarks/results/chaos_compare.json``
and a Markdown table is printed (the one in docs/reliability.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import psutil

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.machine import describe_machine

RESULTS = Path(__file__).resolve().parent / "results" / "chaos_compare.json"
PEERS = ("procpool", "ProcessPoolExecutor", "loky", "pebble")


def chaos_task(index: int, log_path: str, seconds: float) -> int:
    """Record that task ``index`` starts in this process, then spin for ``seconds``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"{index} {os.getpid()}\n".encode())  # one small O_APPEND write: never interleaved
    finally:
        os.close(fd)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass
    return index


def square(x: int) -> int:
    return x * x


@dataclass
class Outcome:
    peer: str
    tasks: int = 0
    succeeded: int = 0
    crashed: int = 0  # failed after starting in a worker that was killed: a failure with a reason
    collateral: int = 0  # failed without having run in a killed worker
    wrong_result: int = 0
    hangs: int = 0
    kills: int = 0
    pool_usable_after: bool = False
    errors: dict[str, int] = field(default_factory=dict)  # failure type -> count
    seconds: float = 0.0


class Killer:
    """SIGKILLs a random worker that is running a task, every few ms, in a thread."""

    def __init__(self, log_path: Path, rng: random.Random, interval_ms: tuple[float, float]) -> None:
        self._log_path = log_path
        self._rng = rng
        self._interval = interval_ms
        self._stop = threading.Event()
        self.killed: set[int] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _running_task_pids(self) -> list[int]:
        """Workers that have started a task and still run: the log's pids, less those killed."""
        pids = {int(line.split()[1]) for line in self._log_path.read_text().splitlines() if line.strip()}
        alive = []
        for pid in pids - self.killed:
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        return sorted(alive)

    def _run(self) -> None:
        while not self._stop.wait(self._rng.uniform(*self._interval) / 1000):
            pids = self._running_task_pids()
            if not pids:
                continue
            pid = self._rng.choice(pids)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.killed.add(pid)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _starts(log_path: Path) -> dict[int, set[int]]:
    """Task index -> pids of the workers it started in (several if it was retried)."""
    starts: dict[int, set[int]] = {}
    for line in log_path.read_text().splitlines():
        if line.strip():
            index, pid = map(int, line.split())
            starts.setdefault(index, set()).add(pid)
    return starts


def _judge(outcome: Outcome, results: dict[int, Any], log_path: Path, killed: set[int]) -> None:
    """Classify each task's outcome: ``results`` maps index -> value, exception, or None (hang)."""
    starts = _starts(log_path)
    for index in range(outcome.tasks):
        result = results.get(index)
        if result is None:
            outcome.hangs += 1
        elif isinstance(result, BaseException):
            name = type(result).__name__
            outcome.errors[name] = outcome.errors.get(name, 0) + 1
            if starts.get(index, set()) & killed:
                outcome.crashed += 1
            else:
                outcome.collateral += 1
        elif result == index:
            outcome.succeeded += 1
        else:
            outcome.wrong_result += 1


def _kill_descendants() -> None:
    """Whatever a broken pool left behind (not multiprocessing's own helpers) must not skew the next peer."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(child.cmdline())
            if "resource_tracker" in cmdline or "semaphore_tracker" in cmdline:
                continue
            if "multiprocessing.forkserver" in cmdline and child.ppid() == os.getpid():
                continue
            child.kill()


# -- peers -----------------------------------------------------------------------------------------


def _run_futures_peer(
    make: Callable[[], Any], submit: Callable[[Any, int], concurrent.futures.Future[Any]], shut: Callable[[Any], None]
) -> Callable[[Outcome, Path, Killer, float, float], None]:
    """A scenario runner for a pool with a concurrent.futures-like interface."""

    def run(outcome: Outcome, log_path: Path, killer: Killer, storm_seconds: float, hang_timeout: float) -> None:
        pool = make()
        results: dict[int, Any] = {}
        futures: dict[concurrent.futures.Future[Any], int] = {}
        try:
            with killer:
                for index in range(outcome.tasks):
                    try:
                        futures[submit(pool, index)] = index
                    except Exception as exc:  # a broken pool refuses new tasks
                        results[index] = exc
                # The storm lasts until every task has an outcome, or the storm time is up.
                concurrent.futures.wait(list(futures), timeout=storm_seconds)
            concurrent.futures.wait(list(futures), timeout=hang_timeout)
            for future, index in futures.items():
                if not future.done():
                    continue
                error = future.exception()
                results[index] = error if error is not None else future.result()
            _judge(outcome, results, log_path, killer.killed)
            outcome.pool_usable_after = _usable(lambda: [submit_square(pool, i) for i in range(4)])
        finally:
            with contextlib.suppress(Exception):
                shut(pool)
            _kill_descendants()

    def submit_square(pool: Any, x: int) -> concurrent.futures.Future[Any]:
        return submit(pool, -x - 1)

    return run


def _usable(submit_some: Callable[[], list[concurrent.futures.Future[Any]]]) -> bool:
    try:
        futures = submit_some()
        done, _ = concurrent.futures.wait(futures, timeout=10)
        return len(done) == len(futures) and all(f.exception() is None for f in futures)
    except Exception:
        return False


def _peers(workers: int, log_path: Path, seconds: float) -> dict[str, Callable[[], Callable[..., None]]]:
    forkserver = multiprocessing.get_context("forkserver")

    def task_args(index: int) -> tuple[Any, ...]:
        if index < 0:  # the health check after the storm: not logged, not killed
            return (index, os.devnull, 0.0)
        return (index, str(log_path), seconds)

    def ppe() -> Callable[..., None]:
        return _run_futures_peer(
            lambda: concurrent.futures.ProcessPoolExecutor(workers, mp_context=forkserver),
            lambda pool, i: pool.submit(chaos_task, *task_args(i)),
            lambda pool: pool.shutdown(wait=False, cancel_futures=True),
        )

    def loky_peer() -> Callable[..., None]:
        import loky

        return _run_futures_peer(
            lambda: loky.ProcessPoolExecutor(workers),
            lambda pool, i: pool.submit(chaos_task, *task_args(i)),
            lambda pool: pool.shutdown(wait=False, kill_workers=True),
        )

    def pebble_peer() -> Callable[..., None]:
        import pebble

        def shut(pool: Any) -> None:
            pool.stop()
            pool.join(5)

        return _run_futures_peer(
            lambda: pebble.ProcessPool(workers, context=forkserver),
            lambda pool, i: pool.schedule(chaos_task, args=task_args(i)),
            shut,
        )

    def procpool_peer() -> Callable[..., None]:
        return lambda *args: anyio.run(_run_procpool, workers, task_args, *args)

    # Factories: a peer's library is imported only when that peer runs (loky and pebble are extras).
    return {"procpool": procpool_peer, "ProcessPoolExecutor": ppe, "loky": loky_peer, "pebble": pebble_peer}


async def _run_procpool(
    workers: int,
    task_args: Callable[[int], tuple[Any, ...]],
    outcome: Outcome,
    log_path: Path,
    killer: Killer,
    storm_seconds: float,
    hang_timeout: float,
) -> None:
    import procpool

    results: dict[int, Any] = {}
    async with procpool.Pool(workers) as pool:
        tasks = []
        with killer:
            tasks = [pool.submit(chaos_task, *task_args(i)) for i in range(outcome.tasks)]
            with anyio.move_on_after(storm_seconds):
                await _all_done(tasks)
        with anyio.move_on_after(hang_timeout):
            await _all_done(tasks)
        for index, task in enumerate(tasks):
            if task.done():
                error = task.exception()
                results[index] = error if error is not None else task.result()
            else:
                task.cancel()
        _judge(outcome, results, log_path, killer.killed)
        try:
            with anyio.fail_after(10):
                checks = [await pool.run(chaos_task, *task_args(-i - 1)) for i in range(4)]
            outcome.pool_usable_after = checks == [-1, -2, -3, -4]
        except Exception:
            outcome.pool_usable_after = False


async def _all_done(tasks: list[Any]) -> None:
    for task in tasks:
        with contextlib.suppress(Exception):
            await task.wait()


# -- the run ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _log_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="chaos-") as directory:
        path = Path(directory) / "starts.log"
        path.touch()
        yield path


def run_peer(peer: str, args: argparse.Namespace, seed: int) -> Outcome:
    outcome = Outcome(peer=peer, tasks=args.tasks)
    with _log_file() as log_path:
        runner = _peers(args.workers, log_path, args.task_ms / 1000)[peer]()
        killer = Killer(log_path, random.Random(seed), (args.kill_min_ms, args.kill_max_ms))
        started = time.perf_counter()
        runner(outcome, log_path, killer, args.storm_seconds, args.hang_timeout)
        outcome.seconds = round(time.perf_counter() - started, 2)
        outcome.kills = len(killer.killed)
    return outcome


def _add(total: Outcome, one: Outcome) -> None:
    for name in ("tasks", "succeeded", "crashed", "collateral", "wrong_result", "hangs", "kills"):
        setattr(total, name, getattr(total, name) + getattr(one, name))
    for name, count in one.errors.items():
        total.errors[name] = total.errors.get(name, 0) + count
    total.seconds = round(total.seconds + one.seconds, 2)


def table(totals: list[dict[str, Any]], rounds: int) -> str:
    lines = [
        "| pool | tasks | succeeded | failed, ran in a killed worker | failed, collateral | hangs | kills "
        "| pool usable after every round | failure types |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in totals:
        usable = f"{row['usable_rounds']} of {rounds}"
        errors = ", ".join(f"{name} {count}" for name, count in sorted(row["errors"].items())) or "-"
        lines.append(
            f"| {row['peer']} | {row['tasks']} | {row['succeeded']} | {row['crashed']} | {row['collateral']} "
            f"| {row['hangs']} | {row['kills']} | {usable} | {errors} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--task-ms", type=float, default=5.0)
    parser.add_argument("--kill-min-ms", type=float, default=5.0)
    parser.add_argument("--kill-max-ms", type=float, default=30.0)
    parser.add_argument("--storm-seconds", type=float, default=60.0, help="the killer's time limit")
    parser.add_argument("--hang-timeout", type=float, default=20.0, help="after the storm, for the rest to finish")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    totals = []
    for peer in args.peers.split(","):
        total = Outcome(peer=peer)
        usable_rounds = 0
        for round_index in range(args.rounds):
            one = run_peer(peer, args, seed=1000 + round_index)
            print(f"{peer} round {round_index + 1}: {asdict(one)}", flush=True)
            _add(total, one)
            usable_rounds += one.pool_usable_after
        row = asdict(total)
        row.pop("pool_usable_after")
        row["usable_rounds"] = usable_rounds
        totals.append(row)
    settings = {name: getattr(args, name) for name in ("tasks", "workers", "task_ms", "kill_min_ms", "kill_max_ms")}
    settings |= {"storm_seconds": args.storm_seconds, "hang_timeout": args.hang_timeout, "rounds": args.rounds}
    versions = {}
    for name in ("procpool", "loky", "pebble"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    versions["python"] = sys.version.split()[0]
    report = {"settings": settings, "machine": describe_machine(), "versions": versions, "totals": totals}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(totals, args.rounds))


if __name__ == "__main__":
    main()
