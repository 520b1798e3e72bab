"""PNG plots of a run (matplotlib, Agg backend): one figure per scenario, a panel per headline figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt

from .metrics import MAP_ROW, Row, format_value, row_for
from .peers import PEERS
from .plan import MAP_PEERS, NO_LOOP
from .summary import Summary

LOOP_COLORS = {"asyncio": "#4c72b0", "uvloop": "#55a868", "trio": "#c44e52", NO_LOOP: "#8172b2"}
LOOP_LABELS = {NO_LOOP: "synchronous API"}
PEER_ORDER = tuple(dict.fromkeys([*PEERS, *MAP_PEERS]))  # the same order in every panel

FIGURES: dict[str, tuple[Row, ...]] = {
    "bench-a.png": (row_for("A", "latency_us"),),
    "bench-b.png": (row_for("B", "tasks_per_s"),),
    "bench-c.png": (row_for("C", "speedup"),),
    "bench-d.png": (row_for("D-array", "mb_per_s"), row_for("D-bytes", "mb_per_s")),
    "bench-e.png": (row_for("E", "lag_p99_ms"),),
    "bench-f.png": (row_for("F", "warm_ms"), row_for("F", "shutdown_ms")),
    "bench-h.png": (MAP_ROW,),
    "bench-i.png": (row_for("I", "scaling"), row_for("C", "rss_mb")),
}


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
    return written
