"""Data analysis with numpy, split across worker processes without copying the data to them.

The naive way to spread ``mean`` over workers is ``pool.map(np.mean, np.array_split(data, k))``
and then the mean of the chunk means. It is wrong twice: every chunk is pickled and copied
through a pipe to its worker (the whole data set, once more), and the mean of the means is not
the mean when the chunks differ in size.

Done right: the data lives in shared memory, created once by the parent. Each task receives only
the name of the block and the bounds of its chunk (a few bytes), maps the block and summarises
its chunk: count, mean, sum of squared deviations, min, max and a histogram. The parent merges
the summaries exactly (Chan et al.'s pairwise formula for mean and variance), and checks the
result against numpy on the whole array.

Run it with ``python examples/analysis.py [--size 20000000] [--chunks 16]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import numpy.typing as npt

import procpool

DTYPE = np.dtype(np.float64)
BINS = np.linspace(-6.0, 6.0, 25)  # fixed edges, so the chunks' histograms add up


@dataclass(frozen=True)
class Summary:
    """What one chunk contributes; `merge` combines two into the summary of both."""

    count: int
    mean: float
    m2: float  # sum of squared deviations from the mean
    low: float
    high: float
    histogram: npt.NDArray[np.int64]

    def merge(self, other: Summary) -> Summary:
        count = self.count + other.count
        delta = other.mean - self.mean
        return Summary(
            count=count,
            mean=self.mean + delta * other.count / count,
            m2=self.m2 + other.m2 + delta * delta * self.count * other.count / count,
            low=min(self.low, other.low),
            high=max(self.high, other.high),
            histogram=self.histogram + other.histogram,
        )

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count))


def summarise(block: str, length: int, start: int, stop: int) -> Summary:
    """Runs in a worker: summarise ``data[start:stop]`` of the shared block named ``block``.

    Only the name and the bounds crossed the process boundary; the data is mapped, not copied.
    """
    shared = SharedMemory(name=block)
    try:
        return summary_of(np.ndarray((length,), dtype=DTYPE, buffer=shared.buf)[start:stop])
    finally:
        # Closing unmaps the block even if an array still points into it (reading that array
        # would then crash the process), so no array over it outlives the call above.
        shared.close()


def summary_of(chunk: npt.NDArray[np.float64]) -> Summary:
    """The `Summary` of one chunk."""
    mean = float(chunk.mean())
    return Summary(
        count=len(chunk),
        mean=mean,
        m2=float(np.square(chunk - mean).sum()),
        low=float(chunk.min()),
        high=float(chunk.max()),
        histogram=np.histogram(chunk, BINS)[0].astype(np.int64),
    )


def chunk_bounds(length: int, chunks: int) -> list[tuple[int, int]]:
    """``chunks`` contiguous ranges covering ``range(length)``, their sizes differing by one at most."""
    edges = np.linspace(0, length, chunks + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


async def analyse(block: str, length: int, chunks: int, pool: procpool.Pool) -> Summary:
    """Summarise the shared array in ``chunks`` tasks and merge their summaries."""
    summaries = [
        summary
        async for summary in pool.map(
            summarise, *zip(*((block, length, a, b) for a, b in chunk_bounds(length, chunks)), strict=True)
        )
    ]
    total = summaries[0]
    for summary in summaries[1:]:
        total = total.merge(summary)
    return total


async def run(size: int, chunks: int, workers: int | None) -> bool:
    """Build the data in shared memory and analyse it; True when numpy agrees."""
    shared = SharedMemory(create=True, size=size * DTYPE.itemsize)
    try:
        return await analyse_and_check(shared, size, chunks, workers)
    finally:
        shared.close()  # once analyse_and_check has returned, no array over the block is left
        shared.unlink()


async def analyse_and_check(shared: SharedMemory, size: int, chunks: int, workers: int | None) -> bool:
    """Fill the shared block, analyse it in the pool, compare with numpy on the whole array."""
    data: npt.NDArray[np.float64] = np.ndarray((size,), dtype=DTYPE, buffer=shared.buf)
    # Readings around a drifting baseline: the chunks' means differ, as real data's would.
    data[:] = np.random.default_rng(seed=7).standard_normal(size) + np.linspace(-1.0, 1.0, size)

    async with procpool.Pool(workers) as pool:
        started = time.perf_counter()
        summary = await analyse(shared.name, size, chunks, pool)
        in_pool = time.perf_counter() - started

    started = time.perf_counter()
    expected = summary_of(data)
    in_numpy = time.perf_counter() - started

    print(f"{size:,} values in {chunks} chunks on {pool.workers} workers: {in_pool:.3f} s (numpy: {in_numpy:.3f} s)")
    print(f"mean {summary.mean:.6f}  std {summary.std:.6f}  min {summary.low:.3f}  max {summary.high:.3f}")
    correct = (
        summary.count == size
        and bool(np.isclose(summary.mean, float(data.mean()), rtol=0, atol=1e-9))
        and bool(np.isclose(summary.std, float(data.std()), rtol=1e-9))
        and (summary.low, summary.high) == (expected.low, expected.high)
        and bool(np.array_equal(summary.histogram, expected.histogram))
    )
    print("matches numpy on the whole array" if correct else "MISMATCH with numpy on the whole array")
    return correct


def main(argv: Sequence[str] | None = None) -> int:
    """Run the analysis; returns the exit status (0 when it matches numpy)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=20_000_000, help="number of values")
    parser.add_argument("--chunks", type=int, default=16, help="tasks to split the work into")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU)")
    args = parser.parse_args(argv)
    if args.size < args.chunks or args.chunks < 1:
        parser.error("need --chunks >= 1 and --size >= --chunks")
    return 0 if asyncio.run(run(args.size, args.chunks, args.workers)) else 1


if __name__ == "__main__":  # required: worker processes re-import this module
    raise SystemExit(main())
