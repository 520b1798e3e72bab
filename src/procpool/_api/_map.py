"""`MapIterator`, the lazy, bounded async iterator behind ``Pool.map``, and `as_completed`."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
import sniffio

from .._core import Task, awaited_result, wait_done
from ._chunking import ChunkSizer
from ._progress import Progress

R = TypeVar("R")
T = TypeVar("T")
_END = object()

SubmitChunk = Callable[[Sequence[Any]], "Task[list[R]]"]
# Inputs sliced rather than iterated: a slice is one copy in C, and a range's is a range, which
# travels as three numbers instead of thousands.
_SLICED = (list, tuple, range)


class _Completions(Generic[T]):
    """Tasks in the order they complete."""

    def __init__(self) -> None:
        self._done: deque[Task[T]] = deque()
        self._wakeup = anyio.Event()

    def watch(self, task: Task[T]) -> None:
        task.add_done_callback(self._on_done)

    def _on_done(self, task: Task[T]) -> None:
        self._done.append(task)
        self._wakeup.set()

    async def next(self) -> Task[T]:
        while not self._done:
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self._done.popleft()

    def clear(self) -> None:
        self._done.clear()


async def as_completed(tasks: Iterable[Task[T]]) -> AsyncIterator[Task[T]]:
    """Yield the given tasks as they complete (succeeded, failed or cancelled).

    Example::

        async for task in procpool.as_completed(tasks):
            print(task.result())

    Args:
        tasks: tasks from ``Pool.submit``; duplicates are yielded once.

    Raises:
        TypeError: ``tasks`` is not an iterable of `Task` (raised when iteration starts).
    """
    if not isinstance(tasks, Iterable):
        raise TypeError(f"as_completed() takes an iterable of tasks from Pool.submit, not {type(tasks).__name__}")
    pending = set(tasks)
    for task in pending:
        if not isinstance(task, Task):
            raise TypeError(f"as_completed() takes tasks from Pool.submit, not {type(task).__name__}: {task!r:.80}")
    completions: _Completions[T] = _Completions()
    for task in pending:
        completions.watch(task)
    for _ in range(len(pending)):
        yield await completions.next()


class MapIterator(Generic[R]):
    """The results of ``Pool.map``, as an async iterator.

    Items are pulled from the input iterables only as fast as results are consumed: at most
    ``max_in_flight`` chunks are submitted ahead (None: as many as the sizer says), refilled
    once half of them have been consumed, so that one wake-up of an idle worker brings it
    several chunks. The first error raised by a task ends the
    iteration with that error. Leaving the iteration early, by ``break`` inside
    ``async with pool.map(...) as results:`` or by ``aclose()``, cancels the chunks still in
    flight; so does garbage collection of an abandoned iterator.

    Awaiting it collects every result into a list: ``squares = await pool.map(square, range(10))``.
    """

    def __init__(
        self,
        submit_chunk: SubmitChunk[R],
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        *,
        star: bool,
        spread: bool,
        ordered: bool,
        sizer: ChunkSizer,
        max_in_flight: int | None,
        progress: Progress | None = None,
        wait_for_room: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._submit_chunk = submit_chunk
        self._progress = progress
        self._wait_for_room = wait_for_room  # a pool with max_queued: wait before each submission
        self._sources: list[Iterator[Any] | AsyncIterator[Any]] = [
            aiter(it) if isinstance(it, AsyncIterable) else iter(it) for it in iterables
        ]
        self._star = star  # each item of the one iterable is the whole argument tuple
        self._spread = spread  # a chunk holds argument tuples, not the items themselves (see ChunkRunner)
        self._sequence: Sequence[Any] | None = None
        self._position = 0  # of the next item of ``_sequence``
        if len(iterables) == 1 and not star and type(iterables[0]) in _SLICED:
            self._sequence = iterables[0]  # type: ignore[assignment]
        self._sync_arguments: Iterator[Any] | None = None
        sync_sources = [source for source in self._sources if isinstance(source, Iterator)]
        if sync_sources and len(sync_sources) == len(self._sources):
            self._sync_arguments = zip(*sync_sources, strict=False) if len(sync_sources) > 1 else sync_sources[0]
        self._ordered = ordered
        self._sizer = sizer
        self._max_in_flight = max_in_flight
        self._in_flight: deque[Task[list[R]]] = deque()
        self._completions: _Completions[list[R]] = _Completions()
        # The results not yet taken: an iterator over ``_chunk``, shared by every way of iterating
        # (``__anext__`` and the generators from ``__aiter__``), and emptied by `_shut`.
        self._chunk: list[R] = []
        self._current: Iterator[R] = iter(self._chunk)
        self._exhausted = not self._sources
        self._closed = False

    def __aiter__(self) -> AsyncIterator[R]:
        # On asyncio an async generator: per item it costs about two thirds of an ``__anext__``
        # coroutine, which is most of a big map's cost in the parent. Not on trio, which warns
        # of a generator left unfinished, as one is by a ``break``.
        return self if sniffio.current_async_library() == "trio" else self._items()

    async def _items(self) -> AsyncGenerator[R, None]:
        while True:
            current = self._current
            for item in current:
                yield item
            if current is self._current:  # else ``__anext__`` took the next chunk meanwhile
                chunk = await self._advance()
                if chunk is None:
                    return

    def __await__(self) -> Generator[Any, None, list[R]]:
        return self._collect().__await__()

    async def _collect(self) -> list[R]:
        collected = list(self._current)
        try:
            while (chunk := await self._next_chunk()) is not None:
                collected += chunk  # whole chunks: no per-item await
        except BaseException:
            await self.aclose()
            raise
        return collected

    async def __anext__(self) -> R:
        item = next(self._current, _END)  # the common case with chunks: no further await needed
        if item is _END:
            if await self._advance() is None:
                raise StopAsyncIteration
            item = next(self._current)
        return item  # type: ignore[return-value]

    async def _advance(self) -> list[R] | None:
        """Make the next chunk's results current (never an empty one); None at the end."""
        try:
            chunk = await self._next_chunk()
        except BaseException:
            await self.aclose()
            raise
        if chunk is not None:
            self._chunk = chunk
            self._current = iter(chunk)
        return chunk

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
                await wait_done(task)

    def __del__(self) -> None:
        self._shut()

    def _shut(self) -> list[Task[list[R]]]:
        self._closed = self._exhausted = True
        tasks = list(self._in_flight)
        self._in_flight.clear()
        self._completions.clear()
        self._chunk.clear()  # ends the iterator over it that a suspended generator holds
        for task in tasks:
            task.cancel()
        if self._progress is not None:
            self._progress.close()
        return tasks

    async def _next_chunk(self) -> list[R] | None:
        """The results of the next chunk (in order, or as completed); None at the end."""
        while True:
            if self._closed:
                return None
            await self._fill()
            if not self._in_flight:
                self._shut()
                return None
            task = await self._next_done()
            chunk = awaited_result(task, iterating=True)
            timing = task.timing
            self._sizer.measured(len(chunk), timing.run_time or timing.total or 0.0)
            if self._progress is not None:
                self._progress.advance(len(chunk))
            if chunk:
                return chunk

    async def _fill(self) -> None:
        limit = self._max_in_flight or self._sizer.in_flight()
        if len(self._in_flight) > limit // 2:
            return  # refilled in batches
        while not self._exhausted and len(self._in_flight) < limit:
            size = self._sizer.next_size()
            chunk = await self._pull(size)
            if len(chunk) < size:
                self._exhausted = True
            self._sizer.taken(len(chunk))
            if chunk:
                if self._wait_for_room is not None:
                    await self._wait_for_room()
                task = self._submit_chunk(chunk)
                self._in_flight.append(task)
                if not self._ordered:
                    self._completions.watch(task)

    async def _pull(self, count: int) -> Sequence[Any]:
        if self._sequence is not None:
            start = self._position
            sliced = self._sequence[start : start + count]
            self._position = start + len(sliced)
            return sliced
        if self._sync_arguments is not None:  # plain iterables: taken at C speed
            taken = itertools.islice(self._sync_arguments, count)
            return tuple(map(tuple, taken)) if self._star else tuple(taken)
        chunk: list[Any] = []
        while len(chunk) < count:
            args: list[Any] = []
            for source in self._sources:
                item = await anext(source, _END) if isinstance(source, AsyncIterator) else next(source, _END)
                if item is _END:  # like zip(), the shortest iterable ends the map
                    return chunk
                args.append(item)
            if self._star:
                chunk.append(tuple(args[0]))
            else:
                chunk.append(tuple(args) if self._spread else args[0])
        return chunk

    async def _next_done(self) -> Task[list[R]]:
        if self._ordered:
            task = self._in_flight[0]
            await wait_done(task)
            self._in_flight.popleft()
            return task
        task = await self._completions.next()
        self._in_flight.remove(task)
        return task
