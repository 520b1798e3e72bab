"""trio-parallel: ``await ctx.run_sync(fn, *args, limiter=...)`` in its own worker context."""

from __future__ import annotations

import functools
from contextlib import AsyncExitStack

import trio
import trio_parallel

from .base import Call, Peer


class TrioParallelPeer(Peer):
    """A `trio_parallel.open_worker_context` with its defaults (spawn), limited to ``workers``."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._stack = AsyncExitStack()

    async def start(self) -> Call:
        context = await self._stack.enter_async_context(trio_parallel.open_worker_context())
        return functools.partial(context.run_sync, limiter=trio.CapacityLimiter(self.workers))

    async def close(self) -> None:
        await self._stack.aclose()

    def details(self) -> dict[str, str]:
        return {"start_method": "spawn"}
