"""From the cells' raw figures to medians and spreads per scenario, loop, peer and figure."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from .plan import SERIAL

Stats = dict[str, float]
Summary = dict[str, dict[str, dict[str, dict[str, Stats]]]]
"""``summary[scenario][loop][peer][figure]`` -> ``{"median", "min", "max", "n"}``."""


def derive(records: list[dict[str, Any]]) -> None:
    """Add the figures that pair two cells of the same repeat, in place.

    - C ``speedup``: the serial batch's seconds over the peer's (same repeat);
    - I ``scaling``: the batch's seconds on 1 worker over those on 2 (C, same peer, loop and repeat).
    Pairing within a repeat keeps slow phases of a noisy machine from skewing a ratio.
    """
    seconds = {
        (r["scenario"], r["peer"], r["loop"], r["repeat"]): r["figures"]["seconds"]
        for r in records
        if r["scenario"] in ("C", "I") and "figures" in r
    }
    for record in records:
        if "figures" not in record or record["peer"] == SERIAL:
            continue
        figures = record["figures"]
        if record["scenario"] == "C":
            serial = seconds.get(("C", SERIAL, "none", record["repeat"]))
            if serial is not None:
                figures["speedup"] = serial / figures["seconds"]
        elif record["scenario"] == "I":
            two_workers = seconds.get(("C", record["peer"], record["loop"], record["repeat"]))
            if two_workers is not None:
                figures["scaling"] = figures["seconds"] / two_workers


def summarize(records: list[dict[str, Any]]) -> Summary:
    """Median, min, max and count of every numeric figure, over the repeats of each cell."""
    samples: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for record in records:
        for name, value in record.get("figures", {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                samples[(record["scenario"], record["loop"], record["peer"], name)].append(float(value))
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
