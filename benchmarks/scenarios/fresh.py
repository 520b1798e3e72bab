"""F-fresh. A fresh interpreter whose asyncio event loop runs (its modules imported, as in any
asyncio program): the peer's import, its first pool until every worker has answered a call (the
import included), and then a second pool in the same process, from its creation.

Only the standard library is imported at module level, and neither anyio nor the peer's library
before the clock starts: the warm-up here is `asyncio.gather`, where `common.warm_up` uses anyio.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

from .. import peers, workload
from ..peers import Call

PROBE_DELAY = 0.002  # as `common.PROBE_DELAY`: keeps a worker busy, so the next probe goes to another
MAX_PROBE_ROUNDS = 200


def measure(peer: str, workers: int, loop: str) -> dict[str, Any]:
    """The figures of one F-fresh cell, on ``loop`` (``asyncio`` or ``uvloop``)."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_two_pools(peer, workers))


async def _two_pools(peer: str, workers: int) -> dict[str, Any]:
    if "anyio" in sys.modules:  # the import timed here would then be only part of the peer's
        raise RuntimeError("F-fresh found anyio imported before its clock started")
    begin = time.perf_counter()
    peer_class = peers.load(peer)  # imports the peer's library
    figures: dict[str, Any] = {"import_ms": 1e3 * (time.perf_counter() - begin)}
    for figure in ("first_pool_ms", "second_pool_ms"):
        instance = peer_class(workers)
        await _every_worker_answered(await instance.start(), workers)
        figures[figure] = 1e3 * (time.perf_counter() - begin)
        await instance.close()
        figures["details"] = instance.details()
        begin = time.perf_counter()
    return figures


async def _every_worker_answered(call: Call, workers: int) -> None:
    """Rounds of ``workers`` concurrent probes until every worker has answered one.

    Raises:
        RuntimeError: fewer than ``workers`` distinct workers answered after many rounds.
    """
    pids: set[int] = set()
    for _ in range(MAX_PROBE_ROUNDS):
        pids.update(await asyncio.gather(*(call(workload.probe, PROBE_DELAY) for _ in range(workers))))
        if len(pids) >= workers:
            return
    raise RuntimeError(f"only {len(pids)} of {workers} workers answered {MAX_PROBE_ROUNDS} rounds of probes")
