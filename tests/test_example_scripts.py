"""The IO-and-CPU examples run as a user would run them, check their own results, and report them;
so does the server load benchmark, in a smoke run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, *args: str) -> list[str]:
    """Run an example with warnings as errors; its output lines, once it exited with status 0."""
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


def test_crawler_finds_and_parses_the_whole_site() -> None:
    lines = _run("crawler.py", "--pages", "40", "--concurrency", "8", "--workers", "2")
    assert lines[0].startswith("crawled 40 of 40 pages in ")
    assert lines[-1] == "all pages found and parsed correctly"


@pytest.mark.parametrize("size", ["100003", "1000000"])  # chunks of unequal and of equal sizes
def test_analysis_matches_numpy_on_the_whole_array(size: str) -> None:
    lines = _run("analysis.py", "--size", size, "--chunks", "7", "--workers", "2")
    assert lines[0].startswith(f"{int(size):,} values in 7 chunks on 2 workers")
    assert lines[-1] == "matches numpy on the whole array"


def test_analysis_rejects_more_chunks_than_values() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "analysis.py"), "--size", "3", "--chunks", "4"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "need --chunks >= 1 and --size >= --chunks" in done.stderr


def test_game_server_demo_serves_pings_during_searches_and_times_out_long_ones() -> None:
    lines = _run("game_server.py", "--demo", "--workers", "2")
    assert lines[0].startswith("4 players ran 8 searches")
    assert "  player 1: SOLVED 10 724; SOLVED 12 14200" in lines
    assert any(line.startswith("meanwhile another player got ") for line in lines)
    assert "a search past its time limit: ERROR timeout" in lines
    assert lines[-1] == "all answers right"


def test_trio_example_demo_serves_pings_during_counts_and_times_out_long_ones() -> None:
    lines = _run("trio_example.py", "--demo", "--workers", "2")
    assert lines[0].startswith("3 clients ran 6 counts")
    assert "  client 1: PRIMES 100000 9592; PRIMES 300000 25997" in lines
    assert any(line.startswith("meanwhile another client got ") for line in lines)
    assert "a count past its time limit: ERROR timeout" in lines
    assert lines[-1] == "all answers right"


@pytest.mark.timeout(150)  # its script may take up to the 120 s given below
def test_server_load_benchmark_runs_every_variant_and_writes_its_results(tmp_path: Path) -> None:
    """A smoke run of benchmarks/server_load.py (figures this short mean nothing; it must just work)."""
    output = tmp_path / "server_load.json"
    script = EXAMPLES.parent / "benchmarks" / "server_load.py"
    args = ["--repeats", "1", "--attempts", "1", "--duration", "0.3", "--idle", "0.2", "--warmup", "0.2"]
    done = subprocess.run(
        [sys.executable, str(script), *args, "--rounds", "1000", "--workers", "1", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(output.read_text())
    assert set(results["medians"]) == {"sync", "blocking", "executor", "procpool"}
    for figures in results["medians"].values():
        assert figures["requests_per_second"] > 0
        assert figures["cpu_requests"] >= 1
        assert figures["health_idle_p99_ms"] > 0
        assert figures["health_load_p99_ms"] > 0
    assert set(results["summary"]) == {"procpool_vs_sync_throughput", "procpool_health_p99_load_over_idle"}
    assert results["parameters"]["workers"] == 1
    assert "procpool vs sync def:" in done.stdout
