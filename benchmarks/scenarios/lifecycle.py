"""F. Pool start until every worker has answered a call, and shutdown until every worker is gone.

Shutdown is timed from the start of ``close`` until the last worker process has exited, which for
anyio (no close; its workers stop when the event loop ends) includes the end of the event loop.
So the cell measures the end of shutdown after the event loop has returned, for every peer alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psutil

from ..peers import Peer
from .common import warm_up

GONE_TIMEOUT = 30.0
ZOMBIE: str = psutil.STATUS_ZOMBIE  # exited, waiting to be reaped


async def start_and_close(peer: Peer) -> dict[str, Any]:
    """Start ``peer``, warm every worker up, close it; the times, the pids and when close began."""
    start = time.perf_counter()
    call = await peer.start()
    started = time.perf_counter()
    pids = await warm_up(call, peer.workers)
    warm = time.perf_counter()
    await peer.close()
    closed = time.perf_counter()
    return {
        "start_ms": 1e3 * (started - start),
        "warm_ms": 1e3 * (warm - start),
        "close_call_ms": 1e3 * (closed - warm),
        "alive_after_close": sum(_alive(pid) for pid in pids),
        "close_began": warm,
        "pids": pids,
    }


def _alive(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return status != ZOMBIE


def wait_gone(pids: Sequence[int]) -> float:
    """Wait until none of ``pids`` is running (a zombie has exited); the `time.perf_counter` then.

    Raises:
        TimeoutError: a worker is still running after 30 s.
    """
    deadline = time.perf_counter() + GONE_TIMEOUT
    while any(_alive(pid) for pid in pids):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"workers {list(pids)} still running {GONE_TIMEOUT} s after close")
        time.sleep(0.0005)
    return time.perf_counter()
