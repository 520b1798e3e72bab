"""PNG plots of a run (matplotlib, Agg backend): one figure per scenario, a panel per headline figure.

The sweep gets one figure of lines against worker count: a row of panels per figure, a column per loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt
from matplotlib import ticker

from .metrics import MAP_ROWS, SWEEP_FIGURES, Row, format_value, row_for, sweep_row, sweep_workers
from .peers import PEERS
from .plan import ALL, MAP_PEERS, NO_LOOP
from .summary import Summary

LOOP_COLORS = {"asyncio": "#4c72b0", "uvloop": "#55a868", "trio": "#c44e52", NO_LOOP: "#8172b2"}
LOOP_LABELS = {NO_LOOP: "synchronous API"}
PEER_ORDER = tuple(dict.fromkeys([*PEERS, *MAP_PEERS]))  # the same order in every panel

FIGURES: dict[str, tuple[Row, ...]] = {
    "bench-a.png": (row_for("A", "latency_us"),),
    "bench-b.png": (row_for("B", "tasks_per_s"),),
    "bench-c.png": (row_for("C", "speedup"), row_for("C15", "speedup")),
    "bench-d.png": (row_for("D-array", "mb_per_s"), row_for("D-bytes", "mb_per_s")),
    "bench-d-peak.png": (row_for("D-peak-array", "peak_x"), row_for("D-peak-bytes", "peak_x")),
    "bench-e.png": (row_for("E", "lag_p99_ms"),),
    "bench-f.png": (row_for("F", "warm_ms"), row_for("F", "shutdown_ms")),
    "bench-f-fresh.png": tuple(row_for("F-fresh", name) for name in ("import_ms", "first_pool_ms", "second_pool_ms")),
    "bench-h.png": MAP_ROWS,
    "bench-i.png": (row_for("I", "scaling"), row_for("C", "rss_mb")),
    "bench-hol.png": (row_for("HOL", "wait_max_ms"), row_for("HOL", "wait_median_ms")),
}
SWEEP_FILE = "bench-sweep.png"
UNIT_NAMES = {"/s": "tasks/s", "us": "µs", "ms": "ms"}
SWEEP_PANELS = (("B-sweep", "tasks_per_s"), ("B-sweep", "parent_us_per_task"), ("E-sweep", "lag_p99_ms"))
PEER_COLORS = dict(
    zip(PEERS, ("black", "#999999", "#dd8452", "#e0b084", "#8172b3", "#937860", "#da8bc3", "#c44e52"), strict=True)
)


def _label(peer: str) -> str:
    if peer in PEERS:
        return PEERS[peer].label
    return MAP_PEERS[peer][0] if peer in MAP_PEERS else peer


def _panel(axes: Any, summary: Summary, row: Row, title: str) -> bool:
    """Horizontal bars, one group per peer and one bar per loop, min-max whiskers; False if no data."""
    by_loop = summary.get(row.scenario, {})
    loops = [loop for loop in LOOP_COLORS if any(row.figure in p for p in by_loop.get(loop, {}).values())]
    peers = [peer for peer in PEER_ORDER if any(row.figure in by_loop[loop].get(peer, {}) for loop in loops)]
    if not peers:
        return False
    height = 0.8 / len(loops)
    values = []
    for index, loop in enumerate(loops):
        label: str | None = LOOP_LABELS.get(loop, loop)  # once per loop, for the legend
        for position, peer in enumerate(peers):
            cell = by_loop[loop].get(peer, {}).get(row.figure)
            if cell is None:
                continue
            y = position + (index - (len(loops) - 1) / 2) * height
            error = [[cell["median"] - cell["min"]], [cell["max"] - cell["median"]]]
            axes.barh(y, cell["median"], height, xerr=error, color=LOOP_COLORS[loop], capsize=2, label=label)
            label = None
            axes.annotate(f" {format_value(cell['median'], row.unit)}", (cell["max"], y), va="center", fontsize=7)
            values.append(cell["median"])
    axes.set_yticks(range(len(peers)), [_label(peer) for peer in peers])
    for tick, peer in zip(axes.get_yticklabels(), peers, strict=True):
        if peer == "procpool":
            tick.set_fontweight("bold")
    axes.invert_yaxis()
    if min(values) > 0 and max(values) / min(values) > 30:
        axes.set_xscale("log")
    axes.margins(x=0.25)
    better = "higher" if row.higher_is_better else "lower"
    axes.set_title(f"{title}\n({better} is better)", fontsize=9)
    axes.legend(fontsize=7, loc="best")
    return True


def _sweep_panel(axes: Any, summary: Summary, scenario: str, figure: str, loop: str) -> bool:
    """A line per peer of one figure of the sweep against worker count, min-max bars; False if no data."""
    counts = sweep_workers(summary, scenario)
    rows = [sweep_row(scenario, figure, workers) for workers in counts]
    drawn = False
    for peer in PEERS:
        points = [
            (workers, cell)
            for workers, row in zip(counts, rows, strict=True)
            if (cell := summary.get(row.scenario, {}).get(loop, {}).get(peer, {}).get(figure)) is not None
        ]
        if not points:
            continue
        x = [workers for workers, _ in points]
        y = [cell["median"] for _, cell in points]
        error = [[c["median"] - c["min"] for _, c in points], [c["max"] - c["median"] for _, c in points]]
        width = 2.2 if peer == "procpool" else 1.2
        style = "--" if peer == "rawpipe" else "-"
        axes.errorbar(x, y, yerr=error, label=_label(peer), color=PEER_COLORS[peer], lw=width, ls=style, marker="o")
        drawn = True
    if not drawn:
        return False
    row = rows[0]
    axes.set_xscale("log", base=2)
    axes.set_xticks(counts, [str(workers) for workers in counts])
    axes.set_xlabel("workers", fontsize=8)
    if figure == "lag_p99_ms":
        axes.set_yscale("log")  # the peers' lags span two orders of magnitude
        axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(ticker.NullFormatter())
        axes.axhline(1.0, color="#999999", lw=0.8, ls=":", label="target: 1 ms")
    else:
        axes.set_ylim(bottom=0)
    better = "higher" if row.higher_is_better else "lower"
    label = row.label.rpartition(",")[0]
    axes.set_title(f"{label} ({UNIT_NAMES[row.unit]}), {loop}\n({better} is better)", fontsize=9)
    axes.legend(fontsize=6, loc="best")
    return True


def _write_sweep(summary: Summary, directory: Path) -> dict[str, str] | None:
    """The sweep's figure, if the run has a sweep; its file and title."""
    loops = [loop for loop in ALL if any(loop in summary.get(key, {}) for key in summary if "@" in key)]
    if not loops:
        return None
    figure, panels = plt.subplots(
        len(SWEEP_PANELS), len(loops), figsize=(4.6 * len(loops), 3.4 * len(SWEEP_PANELS)), squeeze=False
    )
    drawn = False
    for panel_row, (scenario, name) in zip(panels, SWEEP_PANELS, strict=True):
        for axes, loop in zip(panel_row, loops, strict=True):
            has_data = _sweep_panel(axes, summary, scenario, name, loop)
            axes.set_visible(has_data)
            drawn |= has_data
    if drawn:
        figure.tight_layout()
        figure.savefig(directory / SWEEP_FILE, dpi=110)
    plt.close(figure)
    title = "; ".join(
        label
        for scenario, name in SWEEP_PANELS
        for label, figure_name, _, _ in SWEEP_FIGURES[scenario]
        if figure_name == name
    )
    return {"file": SWEEP_FILE, "title": f"Against worker count: {title}"} if drawn else None


def write_plots(run: dict[str, Any], directory: Path) -> list[dict[str, str]]:
    """Draw every figure that has data into ``directory``; the files written (``file``) and their titles."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in FIGURES.items():
        figure, panels = plt.subplots(1, len(rows), figsize=(5.5 * len(rows), 3.6), squeeze=False)
        drawn = [_panel(axes, run["summary"], row, row.label) for axes, row in zip(panels[0], rows, strict=True)]
        if any(drawn):
            for axes, has_data in zip(panels[0], drawn, strict=True):
                axes.set_visible(has_data)
            figure.tight_layout()
            figure.savefig(directory / name, dpi=110)
            written.append({"file": name, "title": "; ".join(row.label for row in rows)})
        plt.close(figure)
    sweep = _write_sweep(run["summary"], directory)
    return [*written, sweep] if sweep is not None else written
