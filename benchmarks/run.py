"""The peers harness: procpool against its peers and the raw-pipe reference, scenarios A to I, HOL and the sweep.

Every cell (one scenario, one peer, one event loop) runs in a fresh interpreter; every repeat runs
all cells once in its own shuffled order, so that the peers interleave on a noisy machine. The run
is written to ``benchmarks/results/`` as JSON (one file per run, and ``latest.json``) and Markdown;
with ``--update-docs`` its plots go to ``docs/img/`` and its report into ``docs/benchmarks.md``.

    python -m benchmarks.run [--mode full|quick|smoke] [--repeats N] [--sweep-repeats N] [--scenarios A,B,...]
                             [--peers procpool,rawpipe,...] [--loops asyncio,...] [--update-docs]

The sweep (``B-sweep``, ``E-sweep``: B and E at each of the mode's worker counts; ``C15``: C on 15
workers) has smaller sizes than B and E and runs in only the first repeat(s), as its cells are many.

``make bench`` runs the full mode (about 20 minutes), ``make bench-quick`` the quick one (about 3).
"""

from __future__ import annotations

import argparse
import compileall
import dataclasses
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from . import machine, plan, report
from .metrics import ROWS, SWEEP_FIGURES, format_value, sweep_row
from .peers import PEERS
from .plan import CHOICES, MAP_PEERS, SCENARIOS, SERIAL, Cell, Sizes
from .summary import derive, summarize
from .targets import evaluate

ROOT = Path(__file__).resolve().parent.parent
CELL_TIMEOUT = 180.0
BUSY_SAMPLE_S = 0.5
GROUP_EXIT_GRACE = 2.0  # seconds a cell's helpers (a forkserver...) get to exit after the cell did


def _run_cell(cell: Cell, sizes: Sizes, iterations: int) -> dict[str, Any]:
    """Run one cell in a fresh interpreter, in its own process group; its record (figures or error)."""
    spec = json.dumps({"cell": dataclasses.asdict(cell), "sizes": dataclasses.asdict(sizes), "iterations": iterations})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    record: dict[str, Any] = dataclasses.asdict(cell)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.cell", spec, str(out)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: on timeout or Ctrl-C, every process of it dies
        )
        try:
            output, _ = process.communicate(timeout=CELL_TIMEOUT)
        except BaseException as exc:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            record["error"] = f"timed out after {CELL_TIMEOUT:.0f} s"
        record["wall_s"] = time.perf_counter() - start
        if _group_outlived(process.pid):
            record["left_processes_behind"] = True
        if process.returncode == 0:
            record["figures"] = json.loads(out.read_text())
        elif "error" not in record:
            last_lines = [line for line in output.splitlines() if line.strip()][-3:]
            record["error"] = " / ".join(last_lines) or f"exit status {process.returncode}"
    return record


def _running_in_group(group: int) -> bool:
    """Whether a process of ``group`` is still running (zombies have exited: init reaps them, slowly here)."""
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return False


def _group_outlived(group: int) -> bool:
    """Whether processes of the cell's group were still running after a grace period (they are killed)."""
    deadline = time.monotonic() + GROUP_EXIT_GRACE
    while _running_in_group(group):
        if time.monotonic() > deadline:
            os.killpg(group, signal.SIGKILL)
            return True
        time.sleep(0.01)
    return False


def _compile_bytecode() -> None:
    """Compile procpool's and the harness's modules: where Python writes no bytecode itself
    (PYTHONDONTWRITEBYTECODE), every cell would compile them from source, which an installed wheel,
    and each peer installed from one, never does."""
    for name in ("procpool", "benchmarks"):
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(location, quiet=1)


def _other_work() -> float:
    """How busy the CPUs are while the harness itself is idle, in percent: other work skews the figures."""
    busy: float = psutil.cpu_percent(interval=BUSY_SAMPLE_S)
    return busy


def _headline(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"ERROR {record['error']:.80}"
    figures = record["figures"]
    summary_key = plan.key(record["scenario"], record["workers"])
    name, _, workers = summary_key.partition("@")
    rows = [sweep_row(name, figure[1], int(workers)) for figure in SWEEP_FIGURES[name]] if workers else ROWS
    for row in rows:
        if row.scenario == summary_key and row.figure in figures:
            return format_value(figures[row.figure], row.unit)
    for name, unit in (("items_per_s", "/s"), ("seconds", "s")):
        if name in figures:
            return format_value(figures[name], unit)
    return ""


def _calibrate(sizes: Sizes) -> int:
    """``spin`` iterations per CPU task, measured in a fresh interpreter."""
    record = _run_cell(Cell("calibrate", SERIAL, plan.NO_LOOP), sizes, 0)
    if "error" in record:
        raise RuntimeError(f"calibration failed: {record['error']}")
    iterations: int = record["figures"]["iterations"]
    return iterations


def measure(cells: list[Cell], sizes: Sizes) -> tuple[list[dict[str, Any]], int]:
    """Run every cell ``sizes.repeats`` times, each repeat in its own shuffled order; the records."""
    needs_cpu = any(cell.scenario in plan.CPU_SCENARIOS for cell in cells)
    iterations = _calibrate(sizes) if needs_cpu else 0
    records = []
    plans = [[cell for cell in cells if repeat < _repeats(cell, sizes)] for repeat in range(sizes.repeats)]
    total = sum(map(len, plans))
    for repeat, order in enumerate(plans):
        random.Random(repeat).shuffle(order)
        for cell in order:
            record = _run_cell(cell, sizes, iterations) | {"repeat": repeat}
            records.append(record)
            print(
                f"[{len(records):>3}/{total}] repeat {repeat + 1}  {plan.key(cell.scenario, cell.workers):<12}"
                f"{cell.loop:<8}{cell.peer:<16}{_headline(record):<14}({record['wall_s']:.1f} s)",
                flush=True,
            )
    return records, iterations


def _repeats(cell: Cell, sizes: Sizes) -> int:
    """How many repeats run ``cell``: the sweep's cells (serial included, for C15 alone) run in fewer."""
    return min(sizes.sweep_repeats, sizes.repeats) if plan.is_sweep(cell.scenario) else sizes.repeats


def _start_methods(records: list[dict[str, Any]]) -> dict[str, str]:
    methods = {}
    for record in records:
        method = record.get("figures", {}).get("details", {}).get("start_method")
        if method and record["peer"] in PEERS:
            methods[record["peer"]] = method
    return methods


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description="Measure procpool against its peers.")
    parser.add_argument("--mode", choices=sorted(plan.MODES), default="full", help="sizes and repeats")
    parser.add_argument("--repeats", type=int, help="override the mode's number of repeats")
    parser.add_argument(
        "--sweep-repeats", type=int, help="override the mode's number of repeats of B-sweep, E-sweep and C15"
    )
    parser.add_argument(
        "--scenarios",
        type=_split,
        default=list(CHOICES),
        help="comma-separated (default: all): "
        + "; ".join(f"{name}: {SCENARIOS[name].title}" for name in CHOICES)
        + ". The sweep's worker counts: "
        + "; ".join(f"{mode} {', '.join(map(str, sizes.sweep_workers))}" for mode, sizes in plan.MODES.items()),
    )
    parser.add_argument(
        "--peers", type=_split, default=[*PEERS, *MAP_PEERS, SERIAL], help="comma-separated (default: all installed)"
    )
    parser.add_argument("--loops", type=_split, help="comma-separated (default: the mode's)")
    parser.add_argument("--results-dir", type=Path, default=report.RESULTS_DIR, help="where the JSON and Markdown go")
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="draw the plots into docs/img, put the report into docs/benchmarks.md",
    )
    parser.add_argument("--docs-page", type=Path, default=report.DOCS_PAGE, help="the page --update-docs rewrites")
    parser.add_argument("--command", help="the command to show in the report (default: this command line)")
    args = parser.parse_args(argv)
    for name in ("repeats", "sweep_repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, then write the JSON, the Markdown and (with ``--update-docs``) the plots and the docs page."""
    args = parse_args(argv)
    sizes = plan.MODES[args.mode]
    if args.repeats is not None:
        sizes = dataclasses.replace(sizes, repeats=args.repeats)
    if args.sweep_repeats is not None:
        sizes = dataclasses.replace(sizes, sweep_repeats=args.sweep_repeats)
    cells = plan.cells(args.scenarios, args.peers, args.loops or list(sizes.loops), sizes.sweep_workers)
    if not cells:
        raise SystemExit("nothing to measure: no installed peer runs the chosen scenarios on the chosen loops")
    started = datetime.now(UTC)
    sweep = sum(plan.is_sweep(cell.scenario) for cell in cells)
    print(
        f"{len(cells) - sweep} cells x {sizes.repeats} repeat(s) and {sweep} sweep cells x "
        f"{min(sizes.sweep_repeats, sizes.repeats)}, {args.mode} mode",
        flush=True,
    )
    clock = time.perf_counter()
    _compile_bytecode()
    busy_before = _other_work()
    records, iterations = measure(cells, sizes)
    derive(records)
    summary = summarize(records)
    stem = f"peers-{started:%Y%m%dT%H%M%SZ}-{args.mode}"
    run: dict[str, Any] = {
        "harness": "python -m benchmarks.run",
        "command": args.command or "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "mode": args.mode,
        "started": started.isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - clock,
        "file": f"{stem}.json",
        "workers": plan.WORKERS,
        "sizes": dataclasses.asdict(sizes),
        "iterations": iterations,
        "machine": machine.describe_machine(),
        "other_work_percent": {"start": busy_before, "end": _other_work()},
        "versions": machine.versions(),
        "start_methods": _start_methods(records),
        "records": records,
        "summary": summary,
        "targets": evaluate(summary),
        "plots": [],
    }
    if args.update_docs:
        report.publish(run, args.docs_page)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    document = json.dumps(run, indent=1) + "\n"
    markdown = report.render(run, None)
    for name in (stem, "latest"):
        (args.results_dir / f"{name}.json").write_text(document)
        (args.results_dir / f"{name}.md").write_text(markdown)
    print()
    print(markdown, end="")
    print(f"\nwritten to {args.results_dir / stem}.json and .md (and latest.*) in {run['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
