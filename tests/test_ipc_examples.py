"""The IPC examples (pipeline, fan-out/fan-in) run as a user would run them and check their results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    return done.stdout.splitlines()


@pytest.mark.parametrize("loop", ["--uvloop", "--trio"])
def test_pipeline_passes_every_number_through_every_stage(loop: str) -> None:
    lines = _run("pipeline.py", "--count", "300", loop)
    assert lines[0].startswith("300 numbers through 3 stages")
    counts = dict(line.strip().split(": ") for line in lines[1:-1])
    assert sum(int(count) for count in counts.values()) == 300
    assert lines[-1] == "correct"


@pytest.mark.parametrize("loop", [[], ["--trio"]])
def test_fan_out_fan_in_gathers_every_result_and_the_failure(loop: list[str]) -> None:
    lines = _run("fan_out_fan_in.py", "--jobs", "60", "--workers", "3", *loop)
    assert lines[0].startswith("60 results from ")
    assert lines[1] == "failed jobs: {30: \"ValueError('job 30: rounds must be >= 0')\"}"
    assert int(lines[2].rsplit(" ", 1)[1]) > 0  # the loop kept ticking
    assert lines[-1] == "correct"
