"""The figures the report shows: which figure of which scenario, its unit, which way is better."""

from __future__ import annotations

from dataclasses import dataclass

from .peers import PEERS, REFERENCES
from .plan import WIDE_WORKERS, key, scenario_of
from .summary import Stats, Summary


@dataclass(frozen=True)
class Row:
    """One headline figure of a scenario: a row of the table per event loop, and a plot.

    Attributes:
        label: what the row shows.
        scenario: the summary key (`plan.key`) whose cells hold the figure.
        figure: the figure's key in the cells' figures.
        unit: ``us``, ``/s``, ``x``, ``MB/s``, ``ms`` or ``MB``.
        higher_is_better: the direction of "better" (ratios and best peers follow it).
    """

    label: str
    scenario: str
    figure: str
    unit: str
    higher_is_better: bool


ROWS = (
    Row("A. awaited round trip of identity, median", "A", "latency_us", "us", False),
    Row("B. tiny tasks, 1,000 in flight", "B", "tasks_per_s", "/s", True),
    Row("B. parent CPU per task (throughput ceiling = 1 ÷ this)", "B", "parent_us_per_task", "us", False),
    Row("C. CPU batch, speedup over serial", "C", "speedup", "x", True),
    Row(f"C. CPU batch on {WIDE_WORKERS} workers, speedup over serial", "C15", "speedup", "x", True),
    Row("D. float64 array to a child, sum() back", "D-array", "mb_per_s", "MB/s", True),
    Row("D. bytes to a child, len() back", "D-bytes", "mb_per_s", "MB/s", True),
    Row("D. a worker's peak memory for a float64 array argument, ÷ its size", "D-peak-array", "peak_x", "x", False),
    Row("D. a worker's peak memory for a bytes argument, ÷ its size", "D-peak-bytes", "peak_x", "x", False),
    Row("E. 1 ms heartbeat lag p99 under B-style load", "E", "lag_p99_ms", "ms", False),
    Row("F. pool start until every worker is warm", "F", "warm_ms", "ms", False),
    Row("F. shutdown until every worker is gone", "F", "shutdown_ms", "ms", False),
    Row("F. fresh interpreter: the import", "F-fresh", "import_ms", "ms", False),
    Row("F. fresh interpreter: the first pool, import included", "F-fresh", "first_pool_ms", "ms", False),
    Row("F. fresh interpreter: a second pool", "F-fresh", "second_pool_ms", "ms", False),
    Row("I. CPU batch, time on 1 worker / on 2", "I", "scaling", "x", True),
    Row("I. idle worker RSS", "C", "rss_mb", "MB", False),
    Row("I. idle worker USS (not shared)", "C", "uss_mb", "MB", False),
    Row("HOL. short tasks beside a long one: the last, late by", "HOL", "wait_max_ms", "ms", False),
    Row("HOL. short tasks beside a long one: the median, late by", "HOL", "wait_median_ms", "ms", False),
)
MAP_DEFAULT_ROW = Row(
    "H. map over tiny items, chunksize left to each library's default", "H-default", "items_per_s", "/s", True
)
MAP_ROW = Row("H. map over tiny items, the same chunksize for every map", "H", "items_per_s", "/s", True)
MAP_ROWS = (MAP_DEFAULT_ROW, MAP_ROW)  # H's figures: with each library's default chunk size, then with one for all

# The figures of the sweep's scenarios, a row per worker count: (label, figure, unit, higher is better).
SWEEP_FIGURES: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "B-sweep": (
        ("B. tiny tasks", "tasks_per_s", "/s", True),
        ("B. parent CPU per task", "parent_us_per_task", "us", False),
    ),
    "E-sweep": (
        ("E. heartbeat lag p99", "lag_p99_ms", "ms", False),
        ("E. tasks per second meanwhile", "tasks_per_s", "/s", True),
    ),
}

PEER_COLUMNS = tuple(PEERS)  # procpool, raw pipe, then the peers


def sweep_row(scenario: str, figure: str, workers: int) -> Row:
    """The row that shows ``figure`` of the sweep ``scenario`` on ``workers`` workers.

    Raises:
        KeyError: the sweep has no such figure.
    """
    for label, name, unit, higher_is_better in SWEEP_FIGURES[scenario]:
        if name == figure:
            return Row(f"{label}, {workers} workers", key(scenario, workers), figure, unit, higher_is_better)
    raise KeyError(f"no row shows {figure!r} of the sweep {scenario!r}")


def sweep_workers(summary: Summary, scenario: str) -> list[int]:
    """The worker counts of the sweep ``scenario`` that have figures, in increasing order."""
    return sorted(int(workers) for name, _, workers in (k.partition("@") for k in summary) if name == scenario)


def row_for(scenario: str, figure: str) -> Row:
    """The row that shows ``figure`` of ``scenario`` (a summary key: ``B-sweep@15`` is a sweep's row).

    Raises:
        KeyError: no row shows it.
    """
    name, _, workers = scenario.partition("@")
    if workers:
        return sweep_row(name, figure, int(workers))
    for row in (*ROWS, *MAP_ROWS):
        if (row.scenario, row.figure) == (scenario, figure):
            return row
    raise KeyError(f"no row shows {figure!r} of scenario {scenario!r}")


def loops_of(row: Row, summary: Summary) -> list[str]:
    """The event loops for which the row has figures, in the scenario's order."""
    measured = summary.get(row.scenario, {})
    return [
        loop
        for loop in scenario_of(row.scenario).loops
        if any(row.figure in p for p in measured.get(loop, {}).values())
    ]


def stats(summary: Summary, row: Row, loop: str, peer: str) -> Stats | None:
    """The row's figure for one peer on one loop, or None."""
    return summary.get(row.scenario, {}).get(loop, {}).get(peer, {}).get(row.figure)


def best_peer(summary: Summary, row: Row, loop: str, candidates: tuple[str, ...]) -> tuple[str, float] | None:
    """The best of ``candidates`` other than the references (procpool, raw pipe) on this row, by median."""
    found = []
    for peer in candidates:
        peer_stats = stats(summary, row, loop, peer)
        if peer not in REFERENCES and peer_stats is not None:
            found.append((peer_stats["median"], peer))
    if not found:
        return None
    value, peer = max(found) if row.higher_is_better else min(found)
    return peer, value


def _digits(value: float) -> str:
    magnitude = abs(value)
    return f"{value:.0f}" if magnitude >= 100 else f"{value:.1f}" if magnitude >= 10 else f"{value:.2f}"


def _scale(median: float, unit: str) -> tuple[float, str]:
    if unit == "us":
        return (1e-3, " ms") if median >= 1000 else (1.0, " µs")
    if unit == "/s":
        return (1e-6, "M/s") if median >= 1e6 else (1e-3, "k/s") if median >= 1e3 else (1.0, "/s")
    if unit == "x":
        return 1.0, "x"
    return 1.0, f" {unit}"


def format_value(value: float, unit: str) -> str:
    """One value with its unit, scaled to a readable size: ``105 µs``, ``12.3k/s``, ``1.88x``."""
    factor, suffix = _scale(value, unit)
    return _digits(value * factor) + suffix


def format_stats(cell: Stats, unit: str) -> str:
    """A median with its unit, and the min-max spread when there was more than one repeat."""
    factor, suffix = _scale(cell["median"], unit)
    text = _digits(cell["median"] * factor) + suffix
    if cell["n"] > 1:
        text += f" ({_digits(cell['min'] * factor)}-{_digits(cell['max'] * factor)})"
    return text


def format_ratio(ratio: float) -> str:
    """A ratio such as ``0.62x``."""
    return f"{ratio:.2f}x"
