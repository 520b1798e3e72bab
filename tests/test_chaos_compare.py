"""benchmarks/chaos_compare.py runs end to end in a short run, so that it cannot rot. It checks the
shape of what the harness writes and what holds for procpool in any run, never a speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_short_run_writes_the_json_and_the_table(tmp_path: Path) -> None:
    output = tmp_path / "chaos.json"
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "benchmarks.chaos_compare", "--tasks", "40", "--rounds", "1"),
            *("--peers", "procpool,ProcessPoolExecutor", "--storm-seconds", "20", "--hang-timeout", "5"),
            *("--output", str(output)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(output.read_text())
    assert report["settings"]["tasks"] == 40
    rows = {row["peer"]: row for row in report["totals"]}
    assert set(rows) == {"procpool", "ProcessPoolExecutor"}
    for row in rows.values():
        outcomes = row["succeeded"] + row["crashed"] + row["collateral"] + row["wrong_result"] + row["hangs"]
        assert outcomes == row["tasks"] == 40
    procpool_row = rows["procpool"]
    assert (procpool_row["hangs"], procpool_row["wrong_result"], procpool_row["usable_rounds"]) == (0, 0, 1)
    assert "| procpool | 40 |" in done.stdout
