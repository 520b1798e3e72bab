"""procpool, through its public API only."""

from __future__ import annotations

from contextlib import AsyncExitStack

import procpool

from .base import Call, Peer


class ProcpoolPeer(Peer):
    """``async with procpool.Pool(workers)``; calls are ``await pool.run(fn, *args)``."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._stack = AsyncExitStack()
        self._pool = procpool.Pool(workers)

    async def start(self) -> Call:
        await self._stack.enter_async_context(self._pool)
        return self._pool.run

    async def close(self) -> None:
        await self._stack.aclose()

    def details(self) -> dict[str, str]:
        return {"start_method": self._pool.start_method}
