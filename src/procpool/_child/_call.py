"""Run one call the way every backend runs it: the worker, `DaskPool`'s workers, `InlinePool`'s
thread and `Process`'s child.

A function that returns an awaitable (an ``async def`` function) has it run to completion on an
event loop of the caller's thread (uvloop when installed). Import-light (stdlib, cloudpickle):
workers import it.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._transport import dumps_for_transport, pack_exception

if TYPE_CHECKING:
    import asyncio  # imported where a coroutine is run: most workers never need it (~60 ms)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop a child runs coroutines on: uvloop's when it is installed."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# Results that cannot be awaitable, told apart at the cost of a set lookup: asking
# `inspect.isawaitable` goes through the Awaitable ABC's isinstance check, which a tiny task feels.
_NEVER_AWAITABLE = frozenset({int, float, complex, str, bytes, bytearray, bool, type(None), list, tuple, dict, set})


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    loop_runner: Callable[[], asyncio.Runner] | None = None,
) -> Any:
    """``fn(*args, **kwargs)``; an awaitable result is awaited on the runner ``loop_runner`` gives
    (asked only then: a worker imports asyncio for the first coroutine), or on a fresh loop."""
    result = fn(*args, **kwargs)
    if type(result) in _NEVER_AWAITABLE or not inspect.isawaitable(result):
        return result
    return complete(result, None if loop_runner is None else loop_runner())


def complete(awaitable: Awaitable[Any], runner: asyncio.Runner | None = None) -> Any:
    """Run ``awaitable`` to completion on ``runner``'s loop, or on a fresh loop if None."""
    if runner is not None:
        return runner.run(_as_coroutine(awaitable))
    import asyncio

    with asyncio.Runner(loop_factory=new_event_loop) as fresh:
        return fresh.run(_as_coroutine(awaitable))


def describe(fn: Callable[..., Any]) -> str:
    """How a function is named in error messages."""
    return repr(getattr(fn, "__qualname__", fn))


def run_pickled(fn_bytes: bytes, args_bytes: bytes) -> tuple[bool, bytes]:
    """Unpickle a call, run it, pickle its outcome; never raises.

    Returns:
        ``(True, pickled result)``, or ``(False, the exception packed by pack_exception)``: also
        for SystemExit and KeyboardInterrupt, which must not end a process that others share.
    """
    try:
        fn = pickle.loads(fn_bytes)
        args, kwargs = pickle.loads(args_bytes)
        return True, dumps_for_transport(call(fn, args, kwargs), f"the result of {describe(fn)}")
    except BaseException as exc:
        return False, pack_exception(exc)


END = object()  # what a stream's ``next_item`` returns after the last item


def item_source(
    items: Any, await_result: Callable[[Awaitable[Any]], Any]
) -> tuple[Callable[[], Any], Callable[[], object] | None]:
    """How a stream takes the next of ``items`` (an iterable or async iterable; `END` after the
    last) and how it closes them, if they can be closed; ``await_result`` runs an awaitable."""
    if isinstance(items, AsyncIterator):
        aiterator = items

        def next_async_item() -> Any:
            return await_result(anext(aiterator, END))

        def close_async() -> object:
            return await_result(aiterator.aclose())  # type: ignore[attr-defined]

        return next_async_item, close_async if inspect.isasyncgen(aiterator) else None
    iterator = iter(items)
    return (lambda: next(iterator, END)), iterator.close if inspect.isgenerator(iterator) else None


class ChunkRunner:
    """Runs ``fn`` over a chunk of items in one task (``Pool.map``, ``Executor.map``): each item is
    the argument tuple where ``spread`` (starmap, a map over several iterables), otherwise the one
    argument itself, which spares a tuple per item in both processes."""

    def __init__(self, fn: Callable[..., Any], *, spread: bool) -> None:
        self.fn = fn
        self.spread = spread

    def __call__(self, chunk: Sequence[Any]) -> Any:
        if inspect.iscoroutinefunction(self.fn):
            return self._run_async(chunk)
        if self.spread:
            return [self.fn(*args) for args in chunk]
        return list(map(self.fn, chunk))

    async def _run_async(self, chunk: Sequence[Any]) -> list[Any]:
        import asyncio  # already imported: this runs on an asyncio loop

        calls = (self.fn(*args) for args in chunk) if self.spread else map(self.fn, chunk)
        return list(await asyncio.gather(*calls))
