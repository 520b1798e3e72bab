"""The standard library: ``loop.run_in_executor(ProcessPoolExecutor(...), fn, *args)``."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .base import Call, Peer


class ProcessPoolExecutorPeer(Peer):
    """A `ProcessPoolExecutor` with its default start method, bridged with ``run_in_executor``."""

    start_method: str | None = None  # multiprocessing's default

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(self.start_method))

    async def start(self) -> Call:
        loop = asyncio.get_running_loop()
        executor = self._executor

        def call(fn: Any, *args: Any) -> asyncio.Future[Any]:
            return loop.run_in_executor(executor, fn, *args)

        return call

    async def close(self) -> None:
        self._executor.shutdown(wait=True)  # blocks the loop, as most code calls it

    def details(self) -> dict[str, str]:
        return {"start_method": self.start_method or multiprocessing.get_start_method()}


class ForkserverProcessPoolExecutorPeer(ProcessPoolExecutorPeer):
    """The same, its workers started by multiprocessing's forkserver, as procpool's are: F-fresh's
    floor for that start method."""

    start_method = "forkserver"
