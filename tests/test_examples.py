"""The examples run as a user would run them, and report success."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _row(section: str, method: str) -> str:
    """The line of ``section`` whose first word is ``method``."""
    return next(line for line in section.splitlines() if line.split(maxsplit=1)[:1] == [method])


@pytest.mark.timeout(150)
def test_demo_quick_shows_each_point_side_by_side_with_the_stdlib() -> None:
    """Each section of the demo shows the behaviour it claims, measured in the run (never a speed)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    header, *blocks = done.stdout.split("\n\n")
    assert "CPUs" in header
    sections = {block[0]: block for block in blocks if block[:2] in ("1.", "2.", "3.", "4.", "5.")}
    assert sorted(sections) == ["1", "2", "3", "4", "5"], done.stdout

    # 1. the loop's lag for each method
    assert _row(sections["1"], "method").split()[1:] == ["lag", "p50", "lag", "p99", "lag", "max", "beats"]
    for method in ("blocking", "stdlib", "procpool"):
        *lags, beats = _row(sections["1"], method).split()[1:]
        assert len(lags) == 3
        assert all(lag.endswith("ms") for lag in lags)
        assert int(beats) > 0

    # 2. the pool start in a column of its own, for both pools, and the ratios of the figures
    speed = sections["2"]
    assert "pool start" in speed
    assert "call p50" in speed
    for method in ("serial", "blocking", "stdlib", "procpool"):
        assert _row(speed, method).endswith("yes")  # the batch's results are right
    for method in ("stdlib", "procpool"):
        assert _row(speed, method).split()[1].endswith("s")  # a pool start was measured
    assert _row(speed, "stdlib/procpool").split()[1].endswith("x")

    # 3. the stdlib's timeout leaves the work running in its worker; procpool's stops it
    stdlib, pp = _row(sections["3"], "stdlib"), _row(sections["3"], "procpool")
    assert "TimeoutError after" in stdlib
    assert "on the same worker; the timed-out work ran to its end: yes" in stdlib
    assert "TimeoutError after" in pp
    assert "on a new worker; the timed-out work ran to its end: no" in pp

    # 4. a crash breaks the stdlib's whole pool; procpool fails that one task and goes on
    stdlib, pp = _row(sections["4"], "stdlib"), _row(sections["4"], "procpool")
    assert "the crashing task: BrokenProcessPool;" in stdlib
    assert stdlib.endswith("the next call: BrokenProcessPool")
    assert "the crashing task: WorkerCrashedError;" in pp
    assert re.search(r"the \d+ others: all returned; the next call: returned$", pp)

    # 5. the map's results, and procpool's progress display (plain text: stderr is not a terminal)
    assert "results correct: yes" in _row(sections["5"], "stdlib")
    assert "results correct: yes" in _row(sections["5"], "procpool")
    assert "hash_chain: 100%" in done.stderr
    assert "pool.stats():" in sections["5"]


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
