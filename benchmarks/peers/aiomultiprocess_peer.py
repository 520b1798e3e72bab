"""aiomultiprocess: ``await pool.apply(coroutine_fn, args)``."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import aiomultiprocess

from .. import workload
from .base import Call, Peer


class AiomultiprocessPeer(Peer):
    """An `aiomultiprocess.Pool` with its defaults (spawn, 16 coroutines per child).

    It runs only coroutine functions, so each call goes through `workload.call`, a one-line
    ``async def`` that calls the plain function.
    """

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._stack = AsyncExitStack()

    async def start(self) -> Call:
        pool = await self._stack.enter_async_context(aiomultiprocess.Pool(self.workers))

        def call(fn: Any, *args: Any) -> Any:
            return pool.apply(workload.call, (fn, *args))

        return call

    async def close(self) -> None:
        await self._stack.aclose()

    def details(self) -> dict[str, str]:
        return {"start_method": aiomultiprocess.core.get_context().get_start_method()}
