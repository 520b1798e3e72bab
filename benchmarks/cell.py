"""One cell of the harness, in its own fresh interpreter: ``python -m benchmarks.cell SPEC OUT``.

SPEC is a JSON object (``cell``, ``sizes``, ``iterations``); the figures are written to OUT as JSON.
Workers started by spawn or forkserver re-import this module as their main module, so it imports
only the standard library at module level, like a light application script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LOOPS: dict[str, tuple[str, dict[str, Any]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


def run(cell: dict[str, Any], sizes: dict[str, Any], iterations: int) -> dict[str, Any]:
    """Measure one cell; its figures.

    Raises:
        ValueError: the cell names an unknown scenario or peer.
    """
    from .plan import SCENARIOS, SERIAL

    scenario, peer, loop, workers = cell["scenario"], cell["peer"], cell["loop"], cell["workers"]
    if scenario == "calibrate" or peer == SERIAL:  # the serial baseline is planned for C alone
        from .scenarios import cpu  # here, not above: it imports anyio, which F-fresh must not find

        if scenario == "calibrate":
            return cpu.calibrate(sizes["cpu_task_s"])
        return cpu.serial_batch(tasks=sizes["cpu_tasks"], iterations=iterations)
    if scenario in ("H", "H-default"):
        return _map(scenario, peer, workers, sizes)
    if SCENARIOS[scenario].sweep_of is not None:  # the same measurement with the sweep's sizes
        scenario = SCENARIOS[scenario].sweep_of
        sizes = sizes | {"tasks": sizes["sweep_tasks"], "heartbeat_s": sizes["sweep_heartbeat_s"]}
    if scenario == "F-fresh":  # before anyio is imported: the cell times the import
        from .scenarios import fresh

        return fresh.measure(peer, workers, loop)
    import anyio

    backend, options = LOOPS[loop]
    if scenario == "F":
        from .scenarios import lifecycle

        figures: dict[str, Any] = anyio.run(_start_and_close, peer, workers, backend=backend, backend_options=options)
        gone = lifecycle.wait_gone(figures["pids"])
        figures["shutdown_ms"] = 1e3 * (gone - figures.pop("close_began"))
        return figures
    result: dict[str, Any] = anyio.run(
        _measure, scenario, peer, workers, sizes, iterations, backend=backend, backend_options=options
    )
    return result


async def _start_and_close(peer: str, workers: int) -> dict[str, Any]:
    from . import peers
    from .scenarios import lifecycle

    instance = peers.load(peer)(workers)
    figures = await lifecycle.start_and_close(instance)
    figures["details"] = instance.details()
    return figures


async def _measure(scenario: str, peer: str, workers: int, sizes: dict[str, Any], iterations: int) -> dict[str, Any]:
    from . import peers
    from .scenarios import common, cpu, headofline, heartbeat, latency, payload, throughput

    instance = peers.load(peer)(workers)
    call = await instance.start()
    try:
        pids = await common.warm_up(call, workers)
        if scenario == "A":
            figures = await latency.round_trip(
                call, calls=sizes["calls"], warmup=sizes["warmup_calls"], budget_s=sizes["call_budget_s"]
            )
        elif scenario == "B":
            figures = await throughput.tiny_tasks(call, tasks=sizes["tasks"], in_flight=sizes["in_flight"])
        elif scenario in ("C", "I"):
            figures = common.worker_memory(pids)  # idle: warmed up, before the batch
            tasks = max(sizes["cpu_tasks"], 2 * workers)  # on many workers, two tasks each
            figures |= await cpu.cpu_batch(call, tasks=tasks, iterations=iterations)
        elif scenario in ("D-array", "D-bytes"):
            figures = await payload.send_payload(
                call, kind=scenario[2:], megabytes=sizes["payload_mb"], transfers=sizes["transfers"]
            )
        elif scenario in ("D-peak-array", "D-peak-bytes"):
            figures = await payload.worker_peak(call, kind=scenario.rpartition("-")[2], megabytes=sizes["peak_mb"])
        elif scenario == "E":
            figures = await heartbeat.heartbeat_lag(call, in_flight=sizes["in_flight"], seconds=sizes["heartbeat_s"])
        elif scenario == "HOL":
            figures = await headofline.short_beside_long(call, long_s=sizes["hol_long_s"], short_s=sizes["hol_short_s"])
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
    finally:
        await instance.close()
    figures["details"] = instance.details()
    return figures


def _map(scenario: str, peer: str, workers: int, sizes: dict[str, Any]) -> dict[str, Any]:
    from .scenarios import mapping

    if scenario == "H-default":  # no chunksize: each library's default
        items, chunksize = sizes["map_default_items"], None
    else:
        items, chunksize = sizes["map_items"], sizes["map_chunksize"]
    if peer == "procpool":
        return mapping.procpool_map(workers, items, chunksize)
    if peer == "mp-imap":
        return mapping.multiprocessing_imap(workers, items, chunksize)
    if peer == "mpire":
        return mapping.mpire_imap(workers, items, chunksize)
    if peer == "ppe-map":
        return mapping.executor_map(workers, items, chunksize)
    raise ValueError(f"unknown map peer {peer!r}")


def main(argv: list[str]) -> int:
    """Run the cell described by ``argv[1]`` (JSON) and write its figures to the file ``argv[2]``."""
    spec = json.loads(argv[1])
    figures = run(spec["cell"], spec["sizes"], spec["iterations"])
    Path(argv[2]).write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":  # required: workers re-import this module
    raise SystemExit(main(sys.argv))
