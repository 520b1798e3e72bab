"""Shared by the tests of procpool's IPC objects (tests/test_ipc_*.py)."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator

import pytest

# The event-loop libraries keep idle worker threads (for anyio.to_thread / trio.to_thread, which
# Process.start uses like the pool does) for a while by design; they are a pool, not a leak.
_LOOP_WORKER_THREADS = ("AnyIO worker thread", "Trio thread", "Trio worker thread")


def _ours(thread: threading.Thread) -> bool:
    return not thread.name.startswith(_LOOP_WORKER_THREADS)


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """``threading.active_count()`` (less the loop libraries' worker pools) is back to where it
    was: no waiter left a thread behind, and the fd-share thread stopped with the last shared object.

    Garbage is collected first, as a cancelled await can keep an object in a reference cycle for
    a while; this also lets the file-descriptor check of conftest see the descriptors closed.
    """
    baseline = sum(_ours(t) for t in threading.enumerate())
    yield
    deadline = time.monotonic() + 3
    while True:
        gc.collect()
        current = [t.name for t in threading.enumerate() if _ours(t)]
        if len(current) <= baseline:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"threads left behind: {current} (baseline {baseline})")
        time.sleep(0.02)
