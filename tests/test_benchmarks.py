"""The peers harness (benchmarks/run.py) runs end to end in its smoke mode, so that it cannot rot.

It asserts the shape of what the harness writes, never a speed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks.summary import Summary
from benchmarks.targets import evaluate

ROOT = Path(__file__).resolve().parent.parent

OTHER_SECTION = "## Server load test\n\nAnother harness's figures, which must stay as they are.\n"


def _smoke_run(tmp_path: Path, *arguments: str, timeout: float) -> dict[str, Any]:
    """Run the harness in smoke mode with ``arguments``, writing into ``tmp_path``'s results/ and
    docs/benchmarks.md; what it wrote to results/latest.json."""
    results = tmp_path / "results"
    page = tmp_path / "docs" / "benchmarks.md"
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "benchmarks.run", "--mode", "smoke", *arguments),
            *("--results-dir", str(results), "--update-docs", "--docs-page", str(page)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run: dict[str, Any] = json.loads((results / "latest.json").read_text())
    return run


def test_smoke_run_writes_json_markdown_and_the_docs_section(tmp_path: Path) -> None:
    results = tmp_path / "results"
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text(
        f"# Benchmarks\n\n{OTHER_SECTION}\n<!-- bench:start -->\nstale figures\n<!-- bench:end -->\n\n## After\n"
    )
    run = _smoke_run(
        tmp_path, *("--scenarios", "A,B,C", "--peers", "procpool,rawpipe,serial", "--loops", "asyncio"), timeout=50
    )
    assert (results / run["file"]).read_text() == (results / "latest.json").read_text()
    measured = {(r["scenario"], r["peer"], r["loop"]) for r in run["records"]}
    assert measured == {
        ("A", "procpool", "asyncio"),
        ("A", "rawpipe", "asyncio"),
        ("B", "procpool", "asyncio"),
        ("B", "rawpipe", "asyncio"),
        ("C", "serial", "none"),
        ("C", "procpool", "asyncio"),
        ("C", "rawpipe", "asyncio"),
    }
    assert [r for r in run["records"] if "error" in r or r.get("left_processes_behind")] == []
    for scenario, figure in (("A", "latency_us"), ("B", "tasks_per_s"), ("C", "speedup"), ("C", "rss_mb")):
        stats = run["summary"][scenario]["asyncio"]["procpool"][figure]
        assert 0 < stats["min"] <= stats["median"] <= stats["max"]
    assert run["machine"]["cpus"] >= 1
    assert run["versions"]["procpool"]
    assert run["start_methods"]["procpool"] in ("forkserver", "spawn")
    targets = {t["target"]: t for t in run["targets"]}
    assert isinstance(targets["A (asyncio): median ≤ 1.2x the raw pipe"]["met"], bool)
    assert targets["A (asyncio): median ≤ 1.2x the raw pipe"]["ratio"] > 0
    assert not any(t["target"].startswith("D") for t in run["targets"])  # D was not run

    markdown = (results / "latest.md").read_text()
    assert markdown.startswith("## Peers and targets\n")
    table_header = "| scenario | loop | procpool | raw pipe | procpool ÷ raw pipe | procpool ÷ best peer |"
    assert table_header in markdown
    assert "| A. awaited round trip of identity, median | asyncio | " in markdown
    assert "| C. CPU batch, speedup over serial | asyncio | " in markdown

    docs = page.read_text()
    assert docs.startswith(f"# Benchmarks\n\n{OTHER_SECTION}\n<!-- bench:start -->\n## Peers and targets\n")
    assert docs.endswith("<!-- bench:end -->\n\n## After\n")
    assert "stale figures" not in docs
    assert docs.count("<!-- bench:start -->") == docs.count("<!-- bench:end -->") == 1
    if importlib.util.find_spec("matplotlib") is not None:  # the bench extra; the dev extra goes without
        assert run["plots"], "no plot was drawn"
        for plot in run["plots"]:
            assert (page.parent / "img" / plot["file"]).read_bytes().startswith(b"\x89PNG")
            assert f"![{plot['title']}](img/{plot['file']})" in docs


@pytest.mark.timeout(120)  # 15 workers per C15 cell, on a small shared machine
def test_smoke_run_of_the_sweep_and_head_of_line(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "benchmarks.md"
    run = _smoke_run(
        tmp_path,
        *("--scenarios", "B-sweep,E-sweep,C15,HOL", "--peers", "procpool,rawpipe,serial", "--loops", "asyncio"),
        timeout=110,
    )
    measured = {(r["scenario"], r["peer"], r["workers"]) for r in run["records"]}
    sweep = {(s, p, w) for s in ("B-sweep", "E-sweep") for p in ("procpool", "rawpipe") for w in (2, 3)}
    cpu = {("C15", "serial", 2), ("C15", "procpool", 15), ("C15", "rawpipe", 15)}
    assert measured == sweep | cpu | {("HOL", "procpool", 2)}  # the raw pipe has no scheduler to show in HOL
    assert [r for r in run["records"] if "error" in r or r.get("left_processes_behind")] == []
    summary = run["summary"]
    for workers in (2, 3):
        b_cell = summary[f"B-sweep@{workers}"]["asyncio"]["procpool"]
        assert b_cell["tasks_per_s"]["median"] > 0
        assert b_cell["parent_us_per_task"]["median"] > 0
        assert summary[f"E-sweep@{workers}"]["asyncio"]["rawpipe"]["lag_p99_ms"]["median"] >= 0
    assert summary["C15"]["asyncio"]["procpool"]["speedup"]["median"] > 0
    hol = summary["HOL"]["asyncio"]["procpool"]
    assert 0 < hol["wait_median_ms"]["median"] <= hol["wait_max_ms"]["median"]

    docs = page.read_text()
    assert "### Against worker count (B-sweep, E-sweep)" in docs
    assert "| B. parent CPU per task, 3 workers | asyncio | " in docs
    assert "| HOL. short tasks beside a long one: the last, late by | asyncio | " in docs
    if importlib.util.find_spec("matplotlib") is not None:
        assert "bench-sweep.png" in {plot["file"] for plot in run["plots"]}
        assert (page.parent / "img" / "bench-sweep.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(90)  # five cells, each in a fresh interpreter, on a small shared machine
def test_smoke_run_of_the_maps_measures_default_and_explicit_chunk_sizes(tmp_path: Path) -> None:
    results = tmp_path / "results"
    page = tmp_path / "docs" / "benchmarks.md"
    run = _smoke_run(tmp_path, *("--scenarios", "H", "--peers", "procpool,mp-imap,ppe-map"), timeout=80)
    measured = {(r["scenario"], r["peer"], r["loop"]) for r in run["records"]}
    explicit = {("H", "procpool", "asyncio"), ("H", "mp-imap", "none"), ("H", "ppe-map", "none")}
    # With default arguments, only procpool's map and multiprocessing's imap: the pair of issue 15
    defaults = {("H-default", "procpool", "asyncio"), ("H-default", "mp-imap", "none")}
    assert measured == explicit | defaults
    assert [r for r in run["records"] if "error" in r or r.get("left_processes_behind")] == []
    assert 0 < run["sizes"]["map_default_items"] < run["sizes"]["map_items"]
    for scenario, peer, loop in explicit | defaults:
        assert run["summary"][scenario][loop][peer]["items_per_s"]["median"] > 0
    targets = {t["target"]: t for t in run["targets"]}
    default_target = targets["H, default arguments: map ≥ 1.0x multiprocessing imap, chunksize left out in both"]
    assert default_target["against"].startswith("multiprocessing imap: ")
    explicit_target = targets["H, one chunksize for every map: map ≥ 1.0x the best map peer"]
    assert explicit_target["against"].startswith(("multiprocessing imap: ", "stdlib PPE map: "))
    for entry in (default_target, explicit_target):
        assert entry["ratio"] > 0
        assert isinstance(entry["met"], bool)

    markdown = (results / "latest.md").read_text()
    assert "| H, default arguments: map ≥ 1.0x multiprocessing imap, chunksize left out in both | " in markdown
    assert "| H, one chunksize for every map: map ≥ 1.0x the best map peer | " in markdown
    header = "| chunksize | items | procpool map | multiprocessing imap | stdlib PPE map | procpool ÷ best peer |"
    assert header in markdown
    default_items, items = run["sizes"]["map_default_items"], run["sizes"]["map_items"]
    assert f"| left out (each library's default) | {default_items:,} | " in markdown
    assert f"| {run['sizes']['map_chunksize']:,} for every map | {items:,} | " in markdown
    assert "- H, default arguments: " in markdown
    assert f"both over {default_items:,} items" in markdown
    docs = page.read_text()
    assert header in docs
    assert "- H, default arguments: " in docs
    if importlib.util.find_spec("matplotlib") is not None:
        (plot,) = [plot for plot in run["plots"] if plot["file"] == "bench-h.png"]
        assert "chunksize left to each library's default" in plot["title"]
        assert "the same chunksize for every map" in plot["title"]


@pytest.mark.timeout(90)  # six cells, each a fresh interpreter starting two pools
def test_smoke_run_of_the_fresh_start_times_the_import_and_two_pools(tmp_path: Path) -> None:
    run = _smoke_run(tmp_path, *("--scenarios", "F-fresh", "--loops", "asyncio,uvloop"), timeout=80)
    measured = {(r["scenario"], r["peer"], r["loop"]) for r in run["records"]}
    peers = ("procpool", "ppe", "ppe-forkserver")
    assert measured == {("F-fresh", peer, loop) for peer in peers for loop in ("asyncio", "uvloop")}
    assert [r for r in run["records"] if "error" in r or r.get("left_processes_behind")] == []
    for peer in peers:
        figures = run["summary"]["F-fresh"]["asyncio"][peer]
        assert 0 < figures["import_ms"]["median"] < figures["first_pool_ms"]["median"]
        assert figures["second_pool_ms"]["median"] > 0
    assert run["start_methods"]["ppe-forkserver"] == "forkserver"
    targets = {t["target"]: t for t in run["targets"]}
    for loop in ("asyncio", "uvloop"):
        for text in ("import procpool ≤ 60 ms", "first pool ≤ 100 ms, import included", "a second pool ≤ 30 ms"):
            assert isinstance(targets[f"F ({loop}): {text}"]["met"], bool)
    markdown = (tmp_path / "results" / "latest.md").read_text()
    assert "| F. fresh interpreter: the first pool, import included | asyncio | " in markdown
    assert "- F, fresh interpreter: " in markdown


def _summary(figures: dict[str, dict[str, float]]) -> Summary:
    """A summary of procpool's medians alone on asyncio: ``{key: {figure: median}}``."""
    return {
        key: {"asyncio": {"procpool": {name: {"median": v, "min": v, "max": v, "n": 1} for name, v in by_name.items()}}}
        for key, by_name in figures.items()
    }


@pytest.mark.parametrize(
    ("lag_ms", "e_rate", "b_rate", "met"),
    [
        (0.5, 19_000.0, 20_000.0, True),
        (0.5, 17_000.0, 20_000.0, False),  # the lag holds only because the load is lighter
        (2.0, 19_000.0, 20_000.0, False),
        (0.5, 19_000.0, None, None),  # without B, the throughput part cannot be checked
        (2.0, 19_000.0, None, False),
    ],
)
def test_the_heartbeat_target_needs_both_the_lag_and_the_throughput(
    lag_ms: float, e_rate: float, b_rate: float | None, met: bool | None
) -> None:
    figures = {"E": {"lag_p99_ms": lag_ms, "tasks_per_s": e_rate}}
    if b_rate is not None:
        figures["B"] = {"tasks_per_s": b_rate}
    (entry,) = [t for t in evaluate(_summary(figures)) if t["target"].startswith("E (asyncio)")]
    assert entry["met"] is met


def test_the_sweep_compares_15_workers_with_2() -> None:
    figures = {"B-sweep@2": {"tasks_per_s": 20_000.0}, "B-sweep@15": {"tasks_per_s": 18_000.0}}
    targets = {t["target"]: t for t in evaluate(_summary(figures))}
    entry = targets["Sweep, B (asyncio): 15 workers ≥ 2 workers"]
    assert entry["met"] is False
    assert entry["against"] == "procpool on 2 workers: 20.0k/s"
    assert targets["Sweep, B (asyncio): 15 workers ≥ 1.5x the best peer on 15"]["met"] is None  # no peer measured


def test_the_map_targets_compare_each_chunk_setting_with_its_own_peers() -> None:
    def map_cell(rate: float) -> dict[str, dict[str, float]]:
        return {"items_per_s": {"median": rate, "min": rate, "max": rate, "n": 1}}

    summary: Summary = {
        "H": {"asyncio": {"procpool": map_cell(1e6)}, "none": {"mp-imap": map_cell(2e6), "ppe-map": map_cell(1.5e6)}},
        "H-default": {"asyncio": {"procpool": map_cell(1e6)}, "none": {"mp-imap": map_cell(2e4)}},
    }
    targets = {t["target"]: t for t in evaluate(summary)}
    default = targets["H, default arguments: map ≥ 1.0x multiprocessing imap, chunksize left out in both"]
    assert (default["against"], default["met"]) == ("multiprocessing imap: 20.0k/s", True)
    explicit = targets["H, one chunksize for every map: map ≥ 1.0x the best map peer"]
    assert (explicit["against"], explicit["met"]) == ("multiprocessing imap: 2.00M/s", False)
