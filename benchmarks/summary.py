"""From the cells' raw figures to medians and spreads per scenario, loop, peer and figure."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from .plan import CPU_SCENARIOS, SERIAL, key

Stats = dict[str, float]
Summary = dict[str, dict[str, dict[str, dict[str, Stats]]]]
"""``summary[key][loop][peer][figure]`` -> ``{"median", "min", "max", "n"}``; ``key`` is `plan.key`."""


def derive(records: list[dict[str, Any]]) -> None:
    """Add the figures that pair two cells of the same repeat, in place.

    - C and C15 ``speedup``: the serial batch's seconds, per task, times the peer's tasks, over the
      peer's seconds (same repeat);
    - I ``scaling``: the batch's seconds on 1 worker over those on 2 (C, same peer, loop and repeat).
    Pairing within a repeat keeps slow phases of a noisy machine from skewing a ratio.
    """
    seconds = {
        (r["scenario"], r["peer"], r["loop"], r["repeat"]): r["figures"]["seconds"]
        for r in records
        if r["scenario"] in CPU_SCENARIOS and "figures" in r
    }
    serial = {r["repeat"]: r["figures"] for r in records if r["peer"] == SERIAL and "figures" in r}
    for record in records:
        if "figures" not in record or record["peer"] == SERIAL:
            continue
        figures = record["figures"]
        if record["scenario"] in ("C", "C15"):
            baseline = serial.get(record["repeat"])
            if baseline is not None:
                per_task = baseline["seconds"] / baseline["tasks"]
                figures["speedup"] = per_task * figures["tasks"] / figures["seconds"]
        elif record["scenario"] == "I":
            two_workers = seconds.get(("C", record["peer"], record["loop"], record["repeat"]))
            if two_workers is not None:
                figures["scaling"] = figures["seconds"] / two_workers


def summarize(records: list[dict[str, Any]]) -> Summary:
    """Median, min, max and count of every numeric figure, over the repeats of each cell.

    Figures are filed under the summary key of the cell (`plan.key`: ``B-sweep@4`` for a sweep's cell).
    """
    samples: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for record in records:
        for name, value in record.get("figures", {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                samples[(key(record["scenario"], record["workers"]), record["loop"], record["peer"], name)].append(
                    float(value)
                )
    summary: Summary = {}
    for (scenario, loop, peer, name), values in samples.items():
        summary.setdefault(scenario, {}).setdefault(loop, {}).setdefault(peer, {})[name] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "n": len(values),
        }
    return summary


def median(summary: Summary, scenario: str, loop: str, peer: str, figure: str) -> float | None:
    """The median of one figure, or None if it was not measured."""
    stats = summary.get(scenario, {}).get(loop, {}).get(peer, {}).get(figure)
    return None if stats is None else stats["median"]
