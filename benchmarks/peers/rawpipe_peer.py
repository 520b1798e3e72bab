"""The raw-pipe reference (`benchmarks.rawpipe`) as a peer."""

from __future__ import annotations

from ..rawpipe import RawPipePool
from .base import Call, Peer


class RawPipePeer(Peer):
    """Pre-started children answering pickles over pipes, read with ``loop.add_reader``."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._pool = RawPipePool(workers)

    async def start(self) -> Call:
        self._pool.start()
        return self._pool.call

    async def close(self) -> None:
        await self._pool.close()

    def details(self) -> dict[str, str]:
        return {"start_method": "subprocess (python -m benchmarks.rawpipe_child)"}
