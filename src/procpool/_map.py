"""`MapIterator`: the lazy, bounded async iterator behind ``Pool.map``."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from ._task import Task

R = TypeVar("R")
_END = object()

SubmitChunk = Callable[[tuple[tuple[Any, ...], ...]], "Task[list[R]]"]


class MapIterator(Generic[R]):
    """The results of ``Pool.map``, as an async iterator.

    Items are pulled from the input iterables only as fast as results are consumed: at most
    ``max_in_flight`` chunks are submitted ahead. The first error raised by a task ends the
    iteration with that error. Leaving the iteration early, by ``break`` inside
    ``async with pool.map(...) as results:`` or by ``aclose()``, cancels the chunks still in
    flight; so does garbage collection of an abandoned iterator.
    """

    def __init__(
        self,
        submit_chunk: SubmitChunk[R],
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        *,
        ordered: bool,
        chunksize: int,
        max_in_flight: int,
    ) -> None:
        self._submit_chunk = submit_chunk
        self._sources: list[Iterator[Any] | AsyncIterator[Any]] = [
            aiter(it) if isinstance(it, AsyncIterable) else iter(it) for it in iterables
        ]
        self._ordered = ordered
        self._chunksize = chunksize
        self._max_in_flight = max_in_flight
        self._in_flight: deque[Task[list[R]]] = deque()
        self._completed: deque[Task[list[R]]] = deque()
        self._wakeup = anyio.Event()
        self._results: deque[R] = deque()
        self._exhausted = not self._sources
        self._closed = False

    def __aiter__(self) -> MapIterator[R]:
        return self

    async def __anext__(self) -> R:
        try:
            return await self._next()
        except BaseException:
            await self.aclose()
            raise

    async def __aenter__(self) -> MapIterator[R]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: cancel every chunk still in flight and wait until each has ended."""
        tasks = self._shut()
        with anyio.CancelScope(shield=True):
            for task in tasks:
                await task._finished()

    def __del__(self) -> None:
        self._shut()

    def _shut(self) -> list[Task[list[R]]]:
        self._closed = self._exhausted = True
        tasks = list(self._in_flight)
        self._in_flight.clear()
        self._completed.clear()
        self._results.clear()
        for task in tasks:
            task.cancel()
        return tasks

    async def _next(self) -> R:
        while not self._results:
            if self._closed:
                raise StopAsyncIteration
            await self._fill()
            if not self._in_flight:
                self._closed = True
                raise StopAsyncIteration
            task = await self._next_done()
            self._results.extend(task.result())
        return self._results.popleft()

    async def _fill(self) -> None:
        while not self._exhausted and len(self._in_flight) < self._max_in_flight:
            chunk = await self._pull(self._chunksize)
            if len(chunk) < self._chunksize:
                self._exhausted = True
            if chunk:
                task = self._submit_chunk(tuple(chunk))
                self._in_flight.append(task)
                if not self._ordered:
                    task._add_done_callback(self._on_done)

    async def _pull(self, count: int) -> list[tuple[Any, ...]]:
        chunk: list[tuple[Any, ...]] = []
        while len(chunk) < count:
            args = []
            for source in self._sources:
                item = await anext(source, _END) if isinstance(source, AsyncIterator) else next(source, _END)
                if item is _END:  # like zip(), the shortest iterable ends the map
                    return chunk
                args.append(item)
            chunk.append(tuple(args))
        return chunk

    def _on_done(self, task: Task[list[R]]) -> None:
        self._completed.append(task)
        self._wakeup.set()

    async def _next_done(self) -> Task[list[R]]:
        if self._ordered:
            task = self._in_flight[0]
            await task._finished()
            self._in_flight.popleft()
            return task
        while not self._completed:
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        task = self._completed.popleft()
        self._in_flight.remove(task)
        return task
