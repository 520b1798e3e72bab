"""What one run measures: the sizes of each mode and the cells (scenario x peer x event loop)."""

from __future__ import annotations

import importlib.util
from collections.abc import Collection
from dataclasses import dataclass

from .peers import PEERS

WORKERS = 2
WIDE_WORKERS = 15  # C15: the CPU batch on as many workers as a 16-core machine leaves the parent a core beside


@dataclass(frozen=True)
class Sizes:
    """The sizes of one mode.

    Attributes:
        repeats: how many times every cell runs (each time in a fresh interpreter).
        loops: the event loops measured (where a scenario and a peer run on them).
        calls: A: at most this many timed round trips per cell...
        call_budget_s: ...or fewer once this many seconds have passed (slow peers).
        warmup_calls: A: untimed round trips first.
        tasks: B: tasks per cell.
        in_flight: B and E: calls outstanding at once.
        cpu_tasks: C and I: tasks in the CPU batch.
        cpu_task_s: C and I: seconds of pure-Python work per task (calibrated once per run).
        payload_mb: D: payload size in MB (10**6 bytes).
        transfers: D: timed transfers per cell.
        peak_mb: D-peak: the size in MB of the argument whose cost in the worker's peak memory is measured.
        heartbeat_s: E: seconds the heartbeat is measured under load.
        map_items: H: items mapped with one chunk size.
        map_chunksize: H: items per chunk, the same for every map.
        map_default_items: H-default: items mapped with each library's default chunk size, the same for
            both maps; fewer than ``map_items``, as multiprocessing's default of one item per task maps
            only ~20k items/s on 2 cores.
        sweep_workers: B-sweep and E-sweep: the worker counts measured.
        sweep_repeats: B-sweep, E-sweep and C15 run in only the first this many repeats (they are many cells).
        sweep_tasks: B-sweep: tasks per cell.
        sweep_heartbeat_s: E-sweep: seconds the heartbeat is measured under load.
        hol_long_s: HOL: seconds of the long task.
        hol_short_s: HOL: seconds of each short task.
    """

    repeats: int
    loops: tuple[str, ...]
    calls: int
    call_budget_s: float
    warmup_calls: int
    tasks: int
    in_flight: int
    cpu_tasks: int
    cpu_task_s: float
    payload_mb: float
    transfers: int
    peak_mb: float
    heartbeat_s: float
    map_items: int
    map_chunksize: int
    map_default_items: int
    sweep_workers: tuple[int, ...]
    sweep_repeats: int
    sweep_tasks: int
    sweep_heartbeat_s: float
    hol_long_s: float
    hol_short_s: float


MODES: dict[str, Sizes] = {
    "full": Sizes(
        repeats=5,
        loops=("asyncio", "uvloop", "trio"),
        calls=1000,
        call_budget_s=1.0,
        warmup_calls=100,
        tasks=20_000,
        in_flight=1000,
        cpu_tasks=16,
        cpu_task_s=0.1,
        payload_mb=50,
        transfers=5,
        peak_mb=500,
        heartbeat_s=2.0,
        map_items=1_000_000,
        map_chunksize=2000,
        map_default_items=100_000,  # ~5 s for multiprocessing's imap
        sweep_workers=(2, 4, 8, 15),
        sweep_repeats=1,
        sweep_tasks=5000,
        sweep_heartbeat_s=1.0,
        hol_long_s=1.0,
        hol_short_s=0.1,
    ),
    "quick": Sizes(
        repeats=1,
        loops=("asyncio", "trio"),  # uvloop left out to stay near a minute: it shares asyncio's code paths
        calls=300,
        call_budget_s=0.15,
        warmup_calls=30,
        tasks=3000,
        in_flight=1000,
        cpu_tasks=16,
        cpu_task_s=0.015,
        payload_mb=10,
        transfers=3,
        peak_mb=100,
        heartbeat_s=0.3,
        map_items=200_000,
        map_chunksize=2000,
        map_default_items=20_000,
        sweep_workers=(2, 15),
        sweep_repeats=1,
        sweep_tasks=3000,
        sweep_heartbeat_s=0.3,
        hol_long_s=1.0,
        hol_short_s=0.1,
    ),
    # For the test that keeps the harness from rotting: seconds, not figures.
    "smoke": Sizes(
        repeats=1,
        loops=("asyncio",),
        calls=30,
        call_budget_s=0.1,
        warmup_calls=5,
        tasks=200,
        in_flight=50,
        cpu_tasks=4,
        cpu_task_s=0.005,
        payload_mb=1,
        transfers=1,
        peak_mb=5,
        heartbeat_s=0.1,
        map_items=5000,
        map_chunksize=100,
        map_default_items=2000,
        sweep_workers=(2, 3),
        sweep_repeats=1,
        sweep_tasks=200,
        sweep_heartbeat_s=0.1,
        hol_long_s=0.2,
        hol_short_s=0.02,
    ),
}


@dataclass(frozen=True)
class Scenario:
    """One scenario: its title, the event loops it runs on, its workers, and what it measures again.

    Attributes:
        title: what it measures, in a few words.
        loops: the event loops it runs on (where a peer runs on them too).
        workers: the pool's workers; None for a sweep: a cell for each of the mode's ``sweep_workers``.
        sweep_of: the scenario whose measurement it repeats with other workers (and the sweep's sizes
            and repeats); None when it is a measurement of its own.
        part_of: the scenario that measures it too, as a part of its own; it is then no choice of its
            own on the command line.
    """

    title: str
    loops: tuple[str, ...]
    workers: int | None = WORKERS
    sweep_of: str | None = None
    part_of: str | None = None


ALL = ("asyncio", "uvloop", "trio")
NO_UVLOOP = ("asyncio", "trio")
ASYNCIO = ("asyncio", "uvloop")

SCENARIOS: dict[str, Scenario] = {
    "A": Scenario("awaited round trip of identity", ALL),
    "B": Scenario("tiny tasks, many in flight", ALL),
    "C": Scenario("pure-Python CPU batch, speedup over serial", NO_UVLOOP),
    "D-array": Scenario("large float64 array to a child, sum() back", ALL),
    "D-bytes": Scenario("large bytes to a child, len() back", ALL),
    # On 1 worker, so that the call that resets its peak memory and the one that reads it meet the same.
    "D-peak-array": Scenario("a worker's peak memory for a large float64 array argument", ("asyncio",), workers=1),
    "D-peak-bytes": Scenario("a worker's peak memory for a large bytes argument", ("asyncio",), workers=1),
    "E": Scenario("heartbeat lag under B-style load", ALL),
    "F": Scenario("pool start until every worker is warm, and shutdown", NO_UVLOOP),
    "F-fresh": Scenario("a fresh interpreter: the import, the first pool (import included), a second pool", ASYNCIO),
    "H": Scenario("map over many tiny items: one chunksize for every map, and each library's default", ("asyncio",)),
    "H-default": Scenario("H with each library's default chunksize", ("asyncio",), part_of="H"),
    "I": Scenario("the CPU batch on 1 worker: scaling, and idle worker memory", NO_UVLOOP, workers=1),
    "HOL": Scenario("head of line: short tasks beside a long one, their wait while a worker is idle", NO_UVLOOP),
    "B-sweep": Scenario("B at each of the mode's worker counts, with the parent's CPU per task", ALL, None, "B"),
    "E-sweep": Scenario("E at each of the mode's worker counts", ALL, None, "E"),
    "C15": Scenario(f"C on {WIDE_WORKERS} workers, two tasks per worker", NO_UVLOOP, WIDE_WORKERS, "C"),
}
CHOICES = tuple(name for name, scenario in SCENARIOS.items() if scenario.part_of is None)  # the command line's

SERIAL = "serial"  # C's baseline: the batch run in the cell's own process
NO_LOOP = "none"
CPU_SCENARIOS = ("C", "C15", "I")  # the cells that run the calibrated CPU batch
NOT_FOR_REFERENCES = frozenset({"HOL"})  # the raw pipe has no scheduler worth comparing: it is left out
# F-fresh's peers: procpool, and the stdlib with its default start method and with procpool's (the
# floor of a forkserver start), which is measured nowhere else.
FRESH_PEERS = ("procpool", "ppe", "ppe-forkserver")
FRESH_ONLY = frozenset({"ppe-forkserver"})

# H's peers: procpool's async map and the synchronous maps of the others (see scenarios/mapping.py).
MAP_PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "procpool": ("procpool map", ("procpool",)),
    "mp-imap": ("multiprocessing imap", ()),
    "mpire": ("mpire imap", ("mpire",)),
    "ppe-map": ("stdlib PPE map", ()),
}
# H-default's: procpool's map with chunksize left out against multiprocessing's imap with its default (1).
DEFAULT_MAP_PEERS = ("procpool", "mp-imap")


@dataclass(frozen=True)
class Cell:
    """One measurement: a scenario, a peer, an event loop and a number of workers."""

    scenario: str
    peer: str
    loop: str
    workers: int = WORKERS


def key(scenario: str, workers: int) -> str:
    """Where the figures of a cell go in the summary: the scenario, and for a sweep its worker count too.

    ``B-sweep`` on 4 workers is ``B-sweep@4``; every other scenario is its own name.
    """
    return f"{scenario}@{workers}" if SCENARIOS[scenario].workers is None else scenario


def scenario_of(summary_key: str) -> Scenario:
    """The scenario of a summary key (see `key`)."""
    return SCENARIOS[summary_key.partition("@")[0]]


def map_loop(peer: str) -> str:
    """The loop of H's cells of ``peer``: asyncio for procpool's async map, none for the synchronous maps."""
    return "asyncio" if peer == "procpool" else NO_LOOP


def is_sweep(scenario: str) -> bool:
    """Whether ``scenario`` is part of the worker-count sweep (its own sizes and repeats)."""
    return SCENARIOS[scenario].sweep_of is not None


def installed(modules: tuple[str, ...]) -> bool:
    """Whether every module in ``modules`` can be imported."""
    return all(importlib.util.find_spec(module) is not None for module in modules)


def loop_available(loop: str) -> bool:
    """Whether the event loop ``loop`` can run here."""
    return loop != "uvloop" or installed(("uvloop",))


def cells(scenarios: list[str], peers: list[str], loops: list[str], sweep_workers: tuple[int, ...]) -> list[Cell]:
    """Every cell of the given scenarios, for the given peers and loops that are installed here.

    Raises:
        ValueError: an unknown scenario, peer or loop is named.
    """
    _check_names("scenario", scenarios, CHOICES)
    _check_names("peer", peers, {**PEERS, **MAP_PEERS, SERIAL: None})
    _check_names("loop", loops, ALL)
    planned: list[Cell] = []
    cpu = [scenario for scenario in CPU_SCENARIOS if scenario in scenarios and scenario != "I"]
    if cpu and SERIAL in peers:  # the speedup's baseline, once per repeat for C and C15 alike
        planned.append(Cell(cpu[0], SERIAL, NO_LOOP))
    for scenario in scenarios:
        if scenario == "H":
            maps = [name for name, (_, requires) in MAP_PEERS.items() if name in peers and installed(requires)]
            planned += [Cell("H", name, map_loop(name)) for name in maps]
            planned += [Cell("H-default", name, map_loop(name)) for name in maps if name in DEFAULT_MAP_PEERS]
            continue
        fixed = SCENARIOS[scenario].workers
        for workers in sweep_workers if fixed is None else (fixed,):
            for name, info in PEERS.items():
                if name not in peers or not installed(info.requires):
                    continue
                if scenario in NOT_FOR_REFERENCES and name == "rawpipe":
                    continue
                if name not in FRESH_PEERS if scenario == "F-fresh" else name in FRESH_ONLY:
                    continue
                planned += [
                    Cell(scenario, name, loop, workers)
                    for loop in SCENARIOS[scenario].loops
                    if loop in info.loops and loop in loops and loop_available(loop)
                ]
    return planned


def _check_names(kind: str, names: list[str], known: Collection[str]) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {', '.join(unknown)}: choose from {', '.join(known)}")
