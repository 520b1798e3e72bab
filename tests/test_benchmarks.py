"""The peers harness (benchmarks/run.py) runs end to end in its smoke mode, so that it cannot rot.

It asserts the shape of what the harness writes, never a speed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

OTHER_SECTION = "## Server load test\n\nAnother harness's figures, which must stay as they are.\n"


def test_smoke_run_writes_json_markdown_and_the_docs_section(tmp_path: Path) -> None:
    results = tmp_path / "results"
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text(
        f"# Benchmarks\n\n{OTHER_SECTION}\n<!-- bench:start -->\nstale figures\n<!-- bench:end -->\n\n## After\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "benchmarks.run", "--mode", "smoke"),
            *("--scenarios", "A,B,C", "--peers", "procpool,rawpipe,serial", "--loops", "asyncio"),
            *("--results-dir", str(results), "--update-docs", "--docs-page", str(page)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    run = json.loads((results / "latest.json").read_text())
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
