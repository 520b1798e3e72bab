"""Fan-out / fan-in: one queue of jobs shared by several worker processes, one queue of results.

    parent --put--> [jobs] --get--> worker 1 ... worker N --put--> [results] --get--> parent

Each worker is a ``procpool.Process`` that takes jobs until the jobs queue is closed. The parent
puts the jobs and, concurrently, gathers the results with ``async for``; its event loop stays free
all along (a heartbeat task shows it: it keeps ticking while the parent waits on the queues).

A job that raises in a worker does not kill the worker: the worker puts the error on the results
queue, and the parent reports it.

Run it with ``python examples/fan_out_fan_in.py [--jobs N] [--workers K] [--trio]``; it checks its
own results and exits with status 0 when they are right.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Sequence

import anyio

import procpool

Result = tuple[int, int, str | None, str | None]  # job id, worker pid, digest, error


def hash_chain(seed: int, rounds: int) -> str:
    """CPU-bound work: SHA-256 applied ``rounds`` times to ``seed``."""
    digest = seed.to_bytes(8, "little")
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def worker(jobs: procpool.Queue[tuple[int, int]], results: procpool.Queue[Result]) -> None:
    """Runs in a child: take jobs until the queue is closed; report each outcome."""
    for job_id, rounds in jobs:
        try:
            if rounds < 0:
                raise ValueError(f"job {job_id}: rounds must be >= 0")
            results.put((job_id, os.getpid(), hash_chain(job_id, rounds), None))
        except Exception as exc:
            results.put((job_id, os.getpid(), None, repr(exc)))


async def fan_out_fan_in(job_rounds: Sequence[int], workers: int) -> tuple[dict[int, Result], int]:
    jobs: procpool.Queue[tuple[int, int]] = procpool.Queue(maxsize=2 * workers)
    results: procpool.Queue[Result] = procpool.Queue()
    gathered: dict[int, Result] = {}
    beats = 0

    async def heartbeat() -> None:
        nonlocal beats
        while True:
            beats += 1
            await anyio.sleep(0.01)

    async def feed() -> None:
        for job_id, rounds in enumerate(job_rounds):
            await jobs.put((job_id, rounds))  # bounded: waits while the workers are busy
        jobs.close()  # the workers finish what is queued, then leave their loop

    async with anyio.create_task_group() as group:
        group.start_soon(heartbeat)
        async with anyio.create_task_group() as work:
            for _ in range(workers):
                work.start_soon(_run_worker, jobs, results)
            work.start_soon(feed)
            async for result in results:  # fan-in
                gathered[result[0]] = result
                if len(gathered) == len(job_rounds):
                    break
        results.close()
        group.cancel_scope.cancel()
    return gathered, beats


async def _run_worker(jobs: procpool.Queue[tuple[int, int]], results: procpool.Queue[Result]) -> None:
    async with procpool.Process(worker, (jobs, results)):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=200, help="how many jobs to fan out")
    parser.add_argument("--workers", type=int, default=4, help="how many worker processes")
    parser.add_argument("--trio", action="store_true", help="run the parent on trio")
    args = parser.parse_args(argv)

    # Varied sizes, and one job that fails on purpose to show errors coming back.
    job_rounds = [500 + (i * 7919) % 2_000 for i in range(args.jobs)]
    job_rounds[args.jobs // 2] = -1
    started = time.perf_counter()
    gathered, beats = anyio.run(fan_out_fan_in, job_rounds, args.workers, backend="trio" if args.trio else "asyncio")
    elapsed = time.perf_counter() - started

    failed = {job_id: r[3] for job_id, r in gathered.items() if r[3] is not None}
    pids = {r[1] for r in gathered.values()}
    correct = sorted(gathered) == list(range(args.jobs)) and all(
        r[2] == hash_chain(job_id, job_rounds[job_id]) for job_id, r in gathered.items() if r[3] is None
    )
    correct = correct and list(failed) == [args.jobs // 2]
    print(f"{len(gathered)} results from {len(pids)} worker processes in {elapsed:.2f}s")
    print(f"failed jobs: {failed}")
    print(f"heartbeat ticks while waiting: {beats}")
    print("correct" if correct else "WRONG RESULTS")
    return 0 if correct else 1


if __name__ == "__main__":  # required: child processes re-import this module
    raise SystemExit(main())
