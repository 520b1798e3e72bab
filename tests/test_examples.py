"""The examples run as a user would run them, and report success."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_demo_quick_prints_the_table_and_all_results_are_correct() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("method"))
    for column in ("wall", "speedup", "lag p50", "lag p99", "lag max", "correct"):
        assert column in header
    for method in ("blocking in the event loop", "run_in_executor(ProcessPool)", "procpool.Pool.run"):
        row = next(line for line in lines if line.startswith(method))
        assert row.rstrip().endswith("yes")
    assert "hash_chain: 100%" in done.stderr  # the progress bar (plain text: not a terminal)
    stats_line = next(line for line in lines if line.startswith("pool.stats():"))
    assert "4 completed, 0 failed, 0 cancelled" in stats_line


def test_streamed_example_stops_the_generator_when_the_consumer_has_enough() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "streamed.py"), "--limit", "3000"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "worker: generator closed after scanning up to" in done.stdout
    assert "the first primes: [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]" in done.stdout
    last = int(done.stdout.rsplit("the last:", 1)[1])
    assert last == 27449  # the 3000th prime
