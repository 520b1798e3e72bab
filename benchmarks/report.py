"""The Markdown report of a run, and its section in docs/benchmarks.md.

``python -m benchmarks.report [RESULTS.json] [--update-docs]`` renders a saved run again (after a
change to this module, say) without measuring anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .metrics import (
    MAP_ROWS,
    PEER_COLUMNS,
    ROWS,
    SWEEP_FIGURES,
    Row,
    best_peer,
    format_ratio,
    format_stats,
    format_value,
    loops_of,
    stats,
    sweep_row,
    sweep_workers,
)
from .peers import PEERS
from .plan import ALL, MAP_PEERS, NO_LOOP, WIDE_WORKERS, map_loop
from .summary import Stats

ROOT = Path(__file__).resolve().parent.parent
DOCS_PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS_DIR = ROOT / "benchmarks" / "results"
IMAGES = "img"  # the plots' folder, beside the docs page
QUIET_PERCENT = 10.0  # other work above this share of the CPUs skews the figures
START_MARKER = "<!-- bench:start -->"
END_MARKER = "<!-- bench:end -->"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "**not met**"


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    """The targets, each with procpool's figure, what it is compared with, the ratio and the verdict."""
    rows = []
    for entry in targets:
        ratio = entry["ratio"]
        measured = entry["procpool"] or "—"
        if entry.get("note"):
            measured += f", {entry['note']}"
        rows.append(
            [
                entry["target"],
                measured,
                entry["against"] or "—",
                "—" if ratio is None else f"{ratio:.3g}" if entry["compares"] == "value" else format_ratio(ratio),
                f"{entry['limit']:g}" + ("" if entry["compares"] == "value" else "x"),
                _verdict(entry["met"]),
            ]
        )
    return _table(["target", "procpool", "compared with", "ratio", "limit", "verdict"], rows)


def scenarios_table(summary: dict[str, Any]) -> list[str]:
    """Every headline figure per scenario and loop, for every peer, with procpool's ratios."""
    return _figures_table(summary, [(row, loop) for row in ROWS for loop in loops_of(row, summary)])


def sweep_table(summary: dict[str, Any]) -> list[str]:
    """The sweep's figures per worker count and loop, for every peer, with procpool's ratios."""
    pairs = []
    for scenario, figures in SWEEP_FIGURES.items():
        counts = sweep_workers(summary, scenario)
        for _, figure, _, _ in figures:
            for loop in ALL:
                rows = [sweep_row(scenario, figure, workers) for workers in counts]
                pairs += [(row, loop) for row in rows if loop in loops_of(row, summary)]
    return _figures_table(summary, pairs) if pairs else []


def parent_cost_table(summary: dict[str, Any]) -> list[str]:
    """B-sweep's parent CPU per task per peer and loop against workers, with the throughput it allows."""
    counts = sweep_workers(summary, "B-sweep")
    rows = []
    for loop in ALL:
        for peer in PEER_COLUMNS:
            cells = [stats(summary, sweep_row("B-sweep", "parent_us_per_task", n), loop, peer) for n in counts]
            if any(cells):
                rows.append([loop, PEERS[peer].label, *map(_cost_and_ceiling, cells)])
    return _table(["loop", "peer", *(f"{n} workers" for n in counts)], rows) if rows else []


def _cost_and_ceiling(cell: Stats | None) -> str:
    """A parent CPU per task and the throughput it allows: ``41.0 µs → 24.4k/s``."""
    if cell is None:
        return ""
    return f"{format_value(cell['median'], 'us')} → {format_value(1e6 / cell['median'], '/s')}"


def _figures_table(summary: dict[str, Any], pairs: Sequence[tuple[Row, str]]) -> list[str]:
    """A row per (figure, loop) pair, a column per peer measured in any of them, then procpool's ratios."""
    columns = [name for name in PEER_COLUMNS if any(stats(summary, row, loop, name) for row, loop in pairs)]
    header = [
        "scenario",
        "loop",
        *(PEERS[name].label for name in columns),
        "procpool ÷ raw pipe",
        "procpool ÷ best peer",
    ]
    rows = []
    for row, loop in pairs:
        cells = []
        for name in columns:
            cell = stats(summary, row, loop, name)
            cells.append("" if cell is None else format_stats(cell, row.unit))
        ours = stats(summary, row, loop, "procpool")
        raw = stats(summary, row, loop, "rawpipe")
        best = best_peer(summary, row, loop, tuple(PEERS))
        vs_raw = format_ratio(ours["median"] / raw["median"]) if ours and raw else ""
        vs_best = f"{format_ratio(ours['median'] / best[1])} ({PEERS[best[0]].label})" if ours and best else ""
        rows.append([row.label, loop, *cells, vs_raw, vs_best])
    return _table(header, rows)


def map_table(summary: dict[str, Any], sizes: dict[str, Any]) -> list[str]:
    """H: procpool's map beside the other maps, in items per second: a row per chunk setting (`MAP_ROWS`)."""
    measured = {row: {name: stats(summary, row, map_loop(name), name) for name in MAP_PEERS} for row in MAP_ROWS}
    present = [name for name in MAP_PEERS if any(cells[name] for cells in measured.values())]
    rows = []
    for row, cells in measured.items():
        if not any(cells.values()):
            continue
        if row.scenario == "H-default":
            chunking, items = "left out (each library's default)", sizes["map_default_items"]
        else:
            chunking, items = f"{sizes['map_chunksize']:,} for every map", sizes["map_items"]
        best = best_peer(summary, row, NO_LOOP, tuple(MAP_PEERS))
        ours = cells["procpool"]
        vs_best = f"{format_ratio(ours['median'] / best[1])} ({MAP_PEERS[best[0]][0]})" if ours and best else ""
        figures = ["" if (cell := cells[name]) is None else format_stats(cell, row.unit) for name in present]
        rows.append([chunking, f"{items:,}", *figures, vs_best])
    header = ["chunksize", "items", *(MAP_PEERS[name][0] for name in present), "procpool ÷ best peer"]
    return _table(header, rows) if rows else []


def _methods(run: dict[str, Any]) -> list[str]:
    """How each scenario that the run measured is measured."""
    sizes = run["sizes"]
    measured = {summary_key.partition("@")[0] for summary_key in run["summary"]}
    measured |= {"D"} if measured & {"D-array", "D-bytes"} else set()
    measured |= {"D-peak"} if measured & {"D-peak-array", "D-peak-bytes"} else set()
    measured |= {"sweep"} if measured & {"B-sweep", "E-sweep"} else set()
    lines = {
        "": "- Every pool has 2 workers (I and D-peak: 1, C15: 15, the sweep: as below) and is started and warmed "
        "up (each worker has answered a call) before anything is timed, except in F, which times the start. Pool start "
        "is never inside what the other scenarios time.",
        "raw": "- The raw pipe is a reference, not a peer: pre-started children answering pickles over "
        "`os.pipe`s, read with `loop.add_reader`, no task tracking (`benchmarks/rawpipe.py`).",
        "A": f"- A: {sizes['calls']:,} calls (fewer if {sizes['call_budget_s']} s pass first; at least 20) "
        f"of `identity(i)`, each awaited before the next is sent, after {sizes['warmup_calls']} untimed ones; "
        "the median latency per cell.",
        "B": f"- B: {sizes['tasks']:,} `identity` calls, {sizes['in_flight']:,} callers each awaiting its calls "
        "one after another, after a tenth as many untimed; tasks per second. Also the parent process's CPU time "
        "(all its threads) per task over the timed calls: on a machine with a core for each worker and one for "
        "the parent, the parent caps throughput at 1 ÷ that.",
        "C": f"- C: {sizes['cpu_tasks']} calls of a pure-Python loop of ~{sizes['cpu_task_s'] * 1e3:.0f} ms "
        f"({run['iterations']:,} turns, calibrated at the start of the run), all submitted at once; speedup = "
        "the CPU time of the same batch run serially in a fresh interpreter of the same repeat ÷ the pool's "
        "wall time (CPU time, so that other work on the machine cannot inflate the baseline).",
        "D": f"- D: a {sizes['payload_mb']:g} MB float64 array (`arange`, the child returns `arr.sum()`) or "
        f"`bytes` (the child returns `len`), {sizes['transfers']} timed calls after a small untimed one; "
        "MB (10⁶ bytes) per second of the median call. Results are checked.",
        "D-peak": f"- D-peak: on a pool of 1 worker, a call resets the worker's peak resident memory (VmHWM, "
        f"by /proc/self/clear_refs) and reads its VmRSS; then a {sizes.get('peak_mb', 0):g} MB float64 array or "
        "`bytes` goes to it, which it reads whole (`sum()`, `len`) before reading its VmHWM. The figure is "
        "(VmHWM - VmRSS before) ÷ the payload's size: 1.0 is the payload held once.",
        "E": f"- E: the B load ({sizes['in_flight']:,} in flight) runs continuously; after 0.2 s, a loop of "
        f"`sleep(1 ms)` runs for {sizes['heartbeat_s']:g} s; the lag is each sleep's time beyond 1 ms; "
        "p99 of the lags, and the tasks per second completed meanwhile.",
        "F": "- F: the first pool of a fresh interpreter (imports done): from creating the pool until every "
        "worker has answered a 2 ms probe call (rounds of one probe per worker, concurrently); shutdown "
        "from the start of `close` until every worker process has exited (for anyio, which has no close, "
        "that is the end of the event loop).",
        "F-fresh": "- F, fresh interpreter: a new interpreter whose asyncio (or uvloop) loop is running, nothing "
        "else imported (no anyio, no peer library): the peer's import; the first pool until every worker has "
        "answered a 2 ms probe, timed from before the import; then, that pool closed, a second pool from its "
        "creation until every worker has answered. `stdlib PPE, forkserver` is the stdlib's pool started as "
        "procpool's is: the floor of a forkserver start. Every package's bytecode is compiled before the run, "
        "as an installed wheel's is.",
        "H": f"- H: {sizes['map_items']:,} `x + 1` items, chunksize {sizes['map_chunksize']:,} for every map, "
        "results consumed in order and summed; after an untimed map of 10,000 items.",
        "H-default": "- H, default arguments: procpool's `pool.map` with `chunksize` left out against "
        "`multiprocessing.Pool.imap` with its default chunksize of 1, both over "
        f"{sizes.get('map_default_items', 0):,} items, fewer than H's as imap sends one item per task "
        "(about 20k items/s on 2 cores); otherwise as H.",
        "I": "- I: the C batch on 1 worker; its time ÷ the time on 2 workers (same repeat): 2.0 is perfect "
        "scaling. Idle worker memory (mean per worker, psutil) is read after the warm-up, before C's batch.",
        "HOL": "- HOL: after 50 concurrent `identity` calls (so a pool that sends tasks ahead believes tasks are "
        f"tiny), one {sizes.get('hol_long_s', 0):g} s `sleep` and three of {sizes.get('hol_short_s', 0):g} s "
        "submitted at once, the long one first (the first of the four tasks to run submits it, on any loop). "
        "Ideally every short task runs on the idle worker, the k-th done k x its duration after they were "
        "submitted; the figures are how late the last one and the median one were done beyond that (a short "
        "task sent ahead behind the long one is late by about the long one's duration). The raw pipe, which "
        "has no scheduler, is left out.",
        "sweep": f"- B-sweep, E-sweep: B and E on {', '.join(map(str, sizes.get('sweep_workers', ())))} workers, "
        f"{sizes.get('sweep_tasks', 0):,} tasks per B cell and {sizes.get('sweep_heartbeat_s', 0):g} s of heartbeat "
        f"per E cell, {min(sizes.get('sweep_repeats', 1), sizes['repeats'])} repeat(s): fewer than B and E, as the "
        f"cells are many. On a machine with fewer CPUs than workers plus one, the workers and the parent share "
        "the CPUs: wall-clock throughput cannot grow with workers there, and the parent's CPU per task is what "
        "tells how far it would on a machine with enough cores.",
        "C15": f"- C15: the C batch on {WIDE_WORKERS} workers, two tasks per worker, against the serial batch's "
        "CPU time per task (same repeat); the sweep's repeats.",
    }
    return [line for key, line in lines.items() if key in ("", "raw") or key in measured]


def _describe(run: dict[str, Any]) -> list[str]:
    machine, versions, busy = run["machine"], run["versions"], run["other_work_percent"]
    installed = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    methods = ", ".join(f"{PEERS[name].label} {method}" for name, method in sorted(run["start_methods"].items()))
    minutes = run["duration_s"] / 60
    return [
        f"Measured by `{run['command']}` on {run['started'][:10]} in {minutes:.1f} min ({run['mode']} mode): "
        f"{len(run['records'])} cells, each in a fresh interpreter; {run['sizes']['repeats']} repeat(s), "
        "each repeat running every cell once in its own shuffled order, so that the peers interleave. "
        "Figures are medians over the repeats, with (min-max) when there was more than one.",
        "",
        f"Reproduce: `make bench` (about 20 minutes) or `make bench-quick` (about 3 minutes, one repeat, "
        f"smaller sizes). Raw figures: `benchmarks/results/{run['file']}`.",
        "",
        f"- Machine: {machine['cpu_model']}, {machine['cpus']} CPUs ({machine['usable_cpus']} usable), "
        f"{machine['memory_gb']} GB, Linux {machine['kernel']}, {machine['python_implementation']} "
        f"{machine['python']}.",
        f"- Other work on the machine, measured while the harness was idle: CPUs {busy['start']:.0f}% busy "
        f"before the run, {busy['end']:.0f}% after it."
        + (
            " **The machine was not quiet: the figures are skewed; run again on an idle machine.**"
            if max(busy.values()) > QUIET_PERCENT
            else ""
        ),
        f"- Versions: {installed}.",
        f"- Start methods: {methods}.",
    ]


def render(run: dict[str, Any], image_dir: str | None) -> str:
    """The report of ``run`` in Markdown; with plots from ``image_dir`` (a path relative to the page) if given."""
    summary = run["summary"]
    lines = ["## Peers and targets", "", *_describe(run), "", "### Targets", "", *targets_table(run["targets"])]
    lines += ["", "### Scenarios", "", *scenarios_table(summary)]
    h_table = map_table(summary, run["sizes"])
    if h_table:
        lines += ["", "### H. Map over many tiny items", "", *h_table]
    s_table = sweep_table(summary)
    if s_table:
        cpus = run["machine"]["usable_cpus"]
        lines += ["", "### Against worker count (B-sweep, E-sweep)", "", *s_table]
        lines += [
            "",
            f"The parent's CPU per task against workers (B-sweep), and the throughput it allows (1 ÷ it) "
            f"where every worker has a core of its own and the parent one more; measured on {cpus} usable CPUs:",
            "",
            *parent_cost_table(summary),
        ]
    failed = [r for r in run["records"] if "error" in r]
    if failed:
        lines += ["", "### Cells that failed", ""]
        lines += [f"- {r['scenario']} {r['loop']} {r['peer']} (repeat {r['repeat']}): {r['error']}" for r in failed]
    if image_dir is not None and run.get("plots"):
        lines += ["", "### Plots", ""]
        lines += [f"![{plot['title']}]({image_dir}/{plot['file']})" for plot in run["plots"]]
    lines += ["", "### What each scenario measures", "", *_methods(run)]
    return "\n".join(lines) + "\n"


def update_docs(section: str, page: Path = DOCS_PAGE) -> None:
    """Put ``section`` between the bench markers of ``page``, leaving the rest of the page as it is.

    The page is created if missing; the markers are appended if the page has none.
    """
    block = f"{START_MARKER}\n{section}{END_MARKER}\n"
    text = page.read_text() if page.exists() else "# Benchmarks\n"
    if START_MARKER in text and END_MARKER in text:
        before, _, rest = text.partition(START_MARKER)
        _, _, after = rest.partition(END_MARKER)
        text = before + block + after.removeprefix("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)


def publish(run: dict[str, Any], page: Path = DOCS_PAGE) -> None:
    """Draw the plots into ``img/`` beside ``page`` and put the report into ``page``.

    Without matplotlib (it comes with the ``bench`` extra) the report goes in without plots.
    """
    try:
        from .plots import write_plots
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): the report has no plots", file=sys.stderr)
        run["plots"] = []
    else:
        run["plots"] = write_plots(run, page.parent / IMAGES)
    update_docs(render(run, IMAGES), page)


def main(argv: Sequence[str] | None = None) -> int:
    """Render a saved run's report again; print it, or publish it into docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description="Render the report of a saved benchmark run again.")
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument("--update-docs", action="store_true", help="redraw the plots, rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    run = json.loads(args.results.read_text())
    if args.update_docs:
        publish(run)
    else:
        print(render(run, None), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
