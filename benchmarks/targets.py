"""The targets of issue 14 for A, B, E and the worker-count sweep, of issue 15 for H, and of issue 5 for the rest.

Issue 14 replaced issue 5's A, B and E targets where they differ (A: at most 1.0x the best peer, no
longer 0.75x; E: the lag only counts at 90% of B's throughput); issue 5's B ≥ 0.5x the raw pipe
stays, as issue 14 does not contradict it. Checked against one run's medians.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .metrics import MAP_ROWS, Row, best_peer, format_ratio, format_value, row_for
from .peers import PEERS
from .plan import ALL, MAP_PEERS, NO_LOOP
from .summary import Summary, median


@dataclass(frozen=True)
class Target:
    """procpool's figure on one loop compared with the raw pipe, the best peer, itself or a fixed limit.

    Attributes:
        text: the target as the issue states it.
        row: the figure compared.
        loop: procpool's event loop.
        against: ``"rawpipe"``, ``"peers"`` (the best of them), ``"procpool"`` (its own figure under
            ``reference``) or ``""`` (``limit`` is an absolute value).
        limit: the largest (``at_most``) or smallest allowed ratio, or value when ``against`` is empty.
        at_most: whether the ratio (or value) must stay at or below ``limit``.
        peer_loop: the loop of the cells compared with (default: ``loop``).
        reference: with ``against="procpool"``, the summary key of the figure compared with.
        share_of_b: E: the target also needs the load's throughput at least this share of B's (the
            B cells of the same loop and workers); None: the throughput is only shown.
    """

    text: str
    row: Row
    loop: str
    against: str
    limit: float
    at_most: bool
    peer_loop: str | None = None
    reference: str | None = None
    share_of_b: float | None = None


_A = row_for("A", "latency_us")
_B = row_for("B", "tasks_per_s")
_C = row_for("C", "speedup")
_D_ARRAY = row_for("D-array", "mb_per_s")
_D_BYTES = row_for("D-bytes", "mb_per_s")
_D_PEAK_ARRAY = row_for("D-peak-array", "peak_x")
_D_PEAK_BYTES = row_for("D-peak-bytes", "peak_x")
_E = row_for("E", "lag_p99_ms")
_F_WARM = row_for("F", "warm_ms")
_F_STOP = row_for("F", "shutdown_ms")
_F_IMPORT = row_for("F-fresh", "import_ms")
_F_FIRST = row_for("F-fresh", "first_pool_ms")
_F_SECOND = row_for("F-fresh", "second_pool_ms")
_H = row_for("H", "items_per_s")
_H_DEFAULT = row_for("H-default", "items_per_s")
_B_WIDE = row_for("B-sweep@15", "tasks_per_s")
_E_WIDE = row_for("E-sweep@15", "lag_p99_ms")
E_SHARE_OF_B = 0.9

TARGETS = (
    *(
        target
        for loop in ("asyncio", "uvloop")
        for target in (
            Target(f"A ({loop}): median ≤ 1.2x the raw pipe", _A, loop, "rawpipe", 1.2, True),
            Target(f"A ({loop}): median ≤ 1.0x the best peer", _A, loop, "peers", 1.0, True),
        )
    ),
    Target("B (asyncio): ≥ 2x the best peer", _B, "asyncio", "peers", 2.0, False),
    Target("B (asyncio): ≥ 0.5x the raw pipe", _B, "asyncio", "rawpipe", 0.5, False),
    Target("B (uvloop): ≥ 2x the best peer", _B, "uvloop", "peers", 2.0, False),
    Target("B (uvloop): ≥ 0.5x the raw pipe", _B, "uvloop", "rawpipe", 0.5, False),
    Target("B (trio): ≥ 2x the best peer", _B, "trio", "peers", 2.0, False),
    Target("C: speedup ≥ 1.9", _C, "asyncio", "", 1.9, False),
    Target("C: speedup ≥ 0.97x the raw pipe's", _C, "asyncio", "rawpipe", 0.97, False),
    Target("D: array ≥ 4x the best peer", _D_ARRAY, "asyncio", "peers", 4.0, False),
    Target("D: bytes ≥ 2x the best peer", _D_BYTES, "asyncio", "peers", 2.0, False),
    Target("D (uvloop): array ≥ 4x the best peer", _D_ARRAY, "uvloop", "peers", 4.0, False),
    Target("D (uvloop): bytes ≥ 2x the best peer", _D_BYTES, "uvloop", "peers", 2.0, False),
    Target("D: a worker's peak memory ≤ 1.2x a large array argument", _D_PEAK_ARRAY, "asyncio", "", 1.2, True),
    Target("D: a worker's peak memory ≤ 1.2x a large bytes argument", _D_PEAK_BYTES, "asyncio", "", 1.2, True),
    *(
        Target(
            f"E ({loop}): heartbeat lag p99 ≤ 1 ms under load, at ≥ 90% of B's throughput",
            _E,
            loop,
            "",
            1.0,
            True,
            share_of_b=E_SHARE_OF_B,
        )
        for loop in ALL
    ),
    Target("F: all workers warm within 150 ms (forkserver)", _F_WARM, "asyncio", "", 150.0, True),
    Target("F: shutdown within 50 ms", _F_STOP, "asyncio", "", 50.0, True),
    *(
        target
        for loop in ("asyncio", "uvloop")
        for target in (
            Target(f"F ({loop}): import procpool ≤ 60 ms", _F_IMPORT, loop, "", 60.0, True),
            Target(f"F ({loop}): first pool ≤ 100 ms, import included", _F_FIRST, loop, "", 100.0, True),
            Target(f"F ({loop}): a second pool ≤ 30 ms", _F_SECOND, loop, "", 30.0, True),
        )
    ),
    Target(
        "H, default arguments: map ≥ 1.0x multiprocessing imap, chunksize left out in both",
        _H_DEFAULT,
        "asyncio",
        "peers",  # the best of DEFAULT_MAP_PEERS: multiprocessing's imap
        1.0,
        False,
        peer_loop=NO_LOOP,
    ),
    Target(
        "H, one chunksize for every map: map ≥ 1.0x the best map peer",
        _H,
        "asyncio",
        "peers",
        1.0,
        False,
        peer_loop=NO_LOOP,
    ),
    *(
        target
        for loop in ALL
        for target in (
            Target(
                f"Sweep, B ({loop}): 15 workers ≥ 2 workers",
                _B_WIDE,
                loop,
                "procpool",
                1.0,
                False,
                reference="B-sweep@2",
            ),
            Target(f"Sweep, B ({loop}): 15 workers ≥ 1.5x the best peer on 15", _B_WIDE, loop, "peers", 1.5, False),
            Target(f"Sweep, E ({loop}): heartbeat lag p99 ≤ 1 ms on 15 workers", _E_WIDE, loop, "", 1.0, True),
        )
    ),
)


def _reference(target: Target, summary: Summary) -> tuple[str, float] | None:
    """The label and median of what procpool is compared with, or None if it was not measured."""
    peer_loop = target.peer_loop or target.loop
    if target.against == "procpool":
        assert target.reference is not None
        value = median(summary, target.reference, peer_loop, "procpool", target.row.figure)
        workers = target.reference.partition("@")[2]
        return None if value is None else (f"procpool on {workers} workers", value)
    if target.against == "rawpipe":
        value = median(summary, target.row.scenario, peer_loop, "rawpipe", target.row.figure)
        return None if value is None else (PEERS["rawpipe"].label, value)
    is_map = target.row in MAP_ROWS
    best = best_peer(summary, target.row, peer_loop, tuple(MAP_PEERS) if is_map else tuple(PEERS))
    if best is None:
        return None
    name, value = best
    label = MAP_PEERS[name][0] if is_map else PEERS[name].label
    return label, value


def evaluate(summary: Summary) -> list[dict[str, Any]]:
    """Each target with procpool's median, what it is compared with, the ratio and whether it is met.

    ``met`` is None when a figure is missing (a cell failed). Targets on a scenario and loop that
    the run did not measure at all are left out.
    """
    results = []
    for target in TARGETS:
        row = target.row
        if not summary.get(row.scenario, {}).get(target.loop):
            continue
        value = median(summary, row.scenario, target.loop, "procpool", row.figure)
        entry: dict[str, Any] = {
            "target": target.text,
            "procpool": None if value is None else format_value(value, row.unit),
            "compares": target.against or "value",
            "against": None,
            "ratio": None,
            "limit": target.limit,
            "met": None,
        }
        if target.against:
            reference = _reference(target, summary)
            if value is not None and reference is not None:
                label, reference_value = reference
                ratio = value / reference_value
                entry |= {"against": f"{label}: {format_value(reference_value, row.unit)}", "ratio": ratio}
        elif value is not None:
            entry["ratio"] = value
        if entry["ratio"] is not None:
            entry["met"] = entry["ratio"] <= target.limit if target.at_most else entry["ratio"] >= target.limit
        if row.scenario.partition("@")[0] in ("E", "E-sweep"):
            share, entry["note"] = _throughput(summary, row.scenario, target.loop)
            if target.share_of_b is not None:  # both parts: the lag, and the throughput meanwhile
                if entry["note"]:
                    entry["note"] += f"; needs ≥ {format_ratio(target.share_of_b)}"
                if entry["met"]:
                    entry["met"] = None if share is None else share >= target.share_of_b
        results.append(entry)
    return results


def _throughput(summary: Summary, e_key: str, loop: str) -> tuple[float | None, str | None]:
    """E's load beside B's throughput with the same workers and loop: the share, and a note that says it."""
    under_load = median(summary, e_key, loop, "procpool", "tasks_per_s")
    full = median(summary, e_key.replace("E", "B", 1), loop, "procpool", "tasks_per_s")
    if under_load is None:
        return None, None
    note = f"at {format_value(under_load, '/s')}"
    if full is None:
        return None, note
    return under_load / full, note + f" ({format_ratio(under_load / full)} of B's {format_value(full, '/s')})"
