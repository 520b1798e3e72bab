"""anyio: ``anyio.to_process.run_sync(fn, *args, limiter=...)``."""

from __future__ import annotations

import functools

import anyio
import anyio.to_process

from .base import Call, Peer


class AnyioPeer(Peer):
    """anyio's process workers, limited to ``workers`` at a time.

    anyio starts its workers on demand and keeps them until the event loop ends; it has no pool
    object to close.
    """

    async def start(self) -> Call:
        return functools.partial(anyio.to_process.run_sync, limiter=anyio.CapacityLimiter(self.workers))

    async def close(self) -> None:
        """Nothing to do: anyio stops its workers when the event loop ends."""

    def details(self) -> dict[str, str]:
        return {"start_method": "subprocess (python -m anyio.to_process)"}
