"""`StreamIterator`: the items of a generator running in a worker, as an async iterator.

Flow control is credit-based: the worker may send only as many items as the parent has granted,
and the parent grants more as the consumer takes items, so at most `WINDOW` items wait in the
parent however slow the consumer is. Closing the iterator early sends CLOSE; the worker closes its
generator (its ``finally`` blocks run) and the worker is free for the next task.
"""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from .._core import StreamLink, Task, awaited_result, wait_done
from .._transport import loads

T = TypeVar("T")


class StreamIterator(Generic[T]):
    """The items a generator yields in a worker (``Pool.stream``), as an async iterator.

    Use it in ``async with`` (or call `aclose`) to close the generator in the worker as soon as
    you leave the loop; an error raised by the generator is raised here, after the items before it.
    If the iteration is cancelled, the generator is asked to close and the worker is killed if it
    has not done so within the pool's ``kill_grace`` (unless ``kill_on_cancel=False``).
    """

    def __init__(self, task: Task[None], link: StreamLink, kill_grace: float) -> None:
        self._task = task
        self._link = link
        self._kill_grace = kill_grace
        task.add_done_callback(lambda _: link.detach())

    def __aiter__(self) -> StreamIterator[T]:
        return self

    async def __anext__(self) -> T:
        try:
            while not self._link.items:
                if self._task.done():
                    awaited_result(self._task, iterating=True)  # raises the generator's error, if any
                    raise StopAsyncIteration
                await self._link.wait()
            body, buffers = self._link.items.popleft()
            await self._link.took_item()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._close(self._kill_grace)
            raise
        item: T = loads(body, buffers)
        return item

    async def __aenter__(self) -> StreamIterator[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the generator in the worker (its ``finally`` blocks run) and drop unread items."""
        await self._close(None)

    def __await__(self) -> Generator[Any, None, list[T]]:
        return self._collect().__await__()

    async def _collect(self) -> list[T]:
        return [item async for item in self]

    async def _close(self, kill_after: float | None) -> None:
        task = self._task
        self._link.items.clear()
        if task.done():
            return
        if not task.running():
            task.cancel()  # still queued: it never starts
            return
        with anyio.move_on_after(kill_after if task.kill_on_cancel else None):
            await self._link.close()
            await wait_done(task)
        if not task.done():
            task.cancel()  # kills the worker
            await wait_done(task)

    def __del__(self) -> None:
        if not self._task.done():
            self._task.cancel()
