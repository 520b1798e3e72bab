"""pebble: ``asyncio.wrap_future(pool.schedule(fn, args))`` on a `pebble.ProcessPool`.

pebble's ``asynchronous.process`` decorator starts a new process per call, so the pool is the fair
comparison.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import pebble

from .base import Call, Peer


class PebblePeer(Peer):
    """A `pebble.ProcessPool` with its default start method."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._pool = pebble.ProcessPool(max_workers=workers)

    async def start(self) -> Call:
        loop = asyncio.get_running_loop()
        pool = self._pool

        def call(fn: Any, *args: Any) -> asyncio.Future[Any]:
            return asyncio.wrap_future(pool.schedule(fn, args), loop=loop)

        return call

    async def close(self) -> None:
        self._pool.close()  # type: ignore[no-untyped-call]  # pebble leaves it unannotated
        self._pool.join()  # blocks the loop, as most code calls it

    def details(self) -> dict[str, str]:
        return {"start_method": multiprocessing.get_start_method()}
