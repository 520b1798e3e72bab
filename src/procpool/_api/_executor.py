"""`PoolExecutor`: a `concurrent.futures.Executor` view of a pool, for threads and executor APIs.

Its futures refuse to be waited on from the pool's own event loop thread while unfinished: the
loop that would complete them is the thread that waits. `concurrent.futures.wait` and
``as_completed`` block on the waiter they append to each future's ``_waiters`` list, the one hook
CPython offers (3.11 to 3.14 alike; tests/test_executor_loop_thread.py would see it change): our
futures' list refuses that append there.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import anyio.from_thread
from anyio.lowlevel import EventLoopToken

from .._child import ChunkRunner
from .._core import PoolState, Task
from .._errors import TaskCancelledError
from ._checks import check_positive_int

if TYPE_CHECKING:
    from ._pool import Pool

P = ParamSpec("P")
T = TypeVar("T")


class PoolExecutor(Executor):
    """A `concurrent.futures.Executor` backed by a `Pool`'s workers (``pool.executor``).

    It can be handed to code that expects an executor, such as
    ``loop.run_in_executor(pool.executor, fn, *args)``, and used from plain threads. Its futures
    follow the executor contract: a pending future can be cancelled (the task never starts), a
    running one cannot. A worker crash fails only the future whose task was running.

    Submitting works from any thread. Waiting does not work on the pool's own event loop thread,
    which is the thread that completes the futures: there, ``future.result()``,
    ``future.exception()`` (with any timeout), iterating ``map()``, ``shutdown(wait=True)``,
    `concurrent.futures.wait` and `concurrent.futures.as_completed` raise `RuntimeError` at once
    while a future of this executor is unfinished, instead of hanging. A finished future answers
    anywhere. In a coroutine, await instead: ``await pool.run(fn, ...)``, or on asyncio
    ``await asyncio.wrap_future(future)`` or ``await loop.run_in_executor(pool.executor, fn, ...)``.

    ``shutdown()`` stops this view from accepting work; the pool itself is closed by its
    ``async with`` block.
    """

    def __init__(self, pool: Pool, token: EventLoopToken, loop_thread: int) -> None:
        self._pool = pool
        self._token = token
        self._loop_thread = loop_thread
        self._lock = threading.Lock()
        self._shut_down = False
        self._futures: set[Future[Any]] = set()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` on the pool; returns a `concurrent.futures.Future`.

        Raises:
            RuntimeError: the executor was shut down.
            TypeError, SerializationError, PoolClosedError: as `Pool.submit` raises them.
        """
        future: _ExecutorFuture[T] = _ExecutorFuture(self._loop_thread)
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._futures.add(future)
        try:
            task = self._in_loop(self._submit_in_loop, future, fn, args, kwargs)
        except BaseException:
            with self._lock:
                self._futures.discard(future)
            raise
        future.add_done_callback(lambda done: self._on_future_done(done, task))
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[T]:
        """Like builtin ``map``, run on the pool; ``chunksize`` items travel in one task.

        As with the standard library's executors, every item is taken and submitted at once, so
        nothing can be measured first: left out, ``chunksize`` is chosen as
        `multiprocessing.Pool.map` chooses it, about four chunks per worker.

        Raises:
            TimeoutError: from the returned iterator, if a result is not ready ``timeout`` seconds
                after the call.
            TypeError: ``timeout`` is not a number or None.
            ValueError: ``chunksize`` is not a positive integer or None.
            RuntimeError: from the returned iterator, on the event loop's own thread, when the
                next result is not ready (waiting there would block the loop that delivers it).
        """
        if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)):
            raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r:.60}")
        check_positive_int("chunksize", chunksize, optional=True)
        arguments = list(zip(*iterables, strict=False))
        if chunksize is None:
            chunksize = max(1, math.ceil(len(arguments) / (4 * self._pool.workers)))
        if chunksize == 1:  # a future per item, as in the standard library; zip(*...) gives the iterables back
            return super().map(fn, *zip(*arguments, strict=True), timeout=timeout)
        spread = len(iterables) > 1
        items = arguments if spread else [args[0] for args in arguments]
        chunks = (tuple(items[start : start + chunksize]) for start in range(0, len(items), chunksize))
        results: Iterator[list[T]] = super().map(ChunkRunner(fn, spread=spread), chunks, timeout=timeout)
        return itertools.chain.from_iterable(results)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; optionally cancel pending futures and wait for the others.

        Raises:
            RuntimeError: ``wait=True`` was asked from the event loop's own thread while futures
                are unfinished: blocking that thread would stop the loop that completes them.
                Use ``shutdown(wait=False)`` there, or ``await pool.aclose()``.
        """
        with self._lock:
            self._shut_down = True
            submitted = list(self._futures)
        if cancel_futures:
            for future in submitted:
                future.cancel()
        if not wait:
            return
        unfinished = [future for future in submitted if not future.done()]
        if unfinished and threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "pool.executor.shutdown(wait=True) with unfinished futures, on the event loop's thread, would "
                "block the loop that completes them; use shutdown(wait=False), or await pool.run(...) and "
                "pool.aclose() in a coroutine"
            )
        futures.wait(unfinished)

    def __repr__(self) -> str:
        if self._shut_down:
            state = "shut down"
        else:
            state = "open" if self._pool._backend.state is PoolState.OPEN else "closed with its pool"
        return f"<procpool.PoolExecutor {state} of {self._pool!r}>"

    # -- crossing into the event loop ------------------------------------------------------------

    def _in_loop(self, fn: Callable[..., T], *args: Any) -> T:
        if threading.get_ident() == self._loop_thread:
            return fn(*args)
        return anyio.from_thread.run_sync(fn, *args, token=self._token)

    def _submit_in_loop(
        self, future: _ExecutorFuture[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Task[Any]:
        # Future.cancel() may come from any thread; whichever of it and the task's start comes
        # first wins. Asked once: a task run again after its worker died has a running future.
        task = self._pool._submit(fn, args, kwargs, start_gate=future.start)
        task.add_done_callback(lambda done: _copy_outcome(done, future))
        return task

    def _on_future_done(self, future: Future[Any], task: Task[Any]) -> None:
        with self._lock:
            self._futures.discard(future)
        if not future.cancelled():
            return
        cast("_ExecutorFuture[Any]", future).notify_cancelled()
        if not task.done():
            with contextlib.suppress(RuntimeError):  # the event loop is gone, and the workers with it
                self._in_loop(task.cancel)


class _ExecutorFuture(Future[T]):
    """A future of `PoolExecutor`: waiting for it on the pool's loop thread raises, at once.

    Its start gate and its cancellation each tell waiters of a cancel (the stdlib leaves that to
    the executor, which here would never do it for a task cancelled before it started), once.
    """

    def __init__(self, loop_thread: int) -> None:
        super().__init__()
        self._loop_thread = loop_thread
        self._waiters = _Waiters(self, loop_thread)
        self._asked = False  # set_running_or_notify_cancel() was called: it may be called once

    def result(self, timeout: float | None = None) -> T:
        self._refuse_to_wait("future.result() (which iterating executor.map() calls)")
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._refuse_to_wait("future.exception()")
        return super().exception(timeout)

    def _refuse_to_wait(self, what: str) -> None:
        if threading.get_ident() == self._loop_thread and not self.done():
            raise _would_block(what)

    def start(self) -> bool:
        """The task's start gate: mark it running, or False if it was cancelled."""
        with self._condition:
            if self._asked:
                return False  # cancelled, and waiters were told
            self._asked = True
            return self.set_running_or_notify_cancel()

    def notify_cancelled(self) -> None:
        """Wake `concurrent.futures.wait` and ``as_completed`` on this cancelled future."""
        with self._condition:
            if not self._asked:
                self._asked = True
                self.set_running_or_notify_cancel()


class _Waiters(list[Any]):
    """A future's waiters list: on the loop thread, waiting for an unfinished future raises.

    ``wait`` and ``as_completed`` append their waiter to every future's list (holding the
    futures' locks) just before they would block, and only then; a finished future lets them.
    The future is held weakly: a cycle would keep its result alive until the next collection.
    """

    def __init__(self, future: _ExecutorFuture[Any], loop_thread: int) -> None:
        super().__init__()
        self._future = weakref.ref(future)
        self._loop_thread = loop_thread

    def append(self, waiter: Any, /) -> None:
        future = self._future()
        if threading.get_ident() == self._loop_thread and future is not None and not future.done():
            raise _would_block("concurrent.futures.wait() or as_completed()")
        super().append(waiter)


def _would_block(what: str) -> RuntimeError:
    return RuntimeError(
        f"{what} on an unfinished pool.executor future, on the event loop's thread, would block the loop "
        "that completes it; in a coroutine, await it instead: `await pool.run(fn, ...)`, or on asyncio "
        "`await asyncio.wrap_future(future)` or `await loop.run_in_executor(pool.executor, fn, ...)`; "
        "or wait from another thread"
    )


def _copy_outcome(task: Task[Any], future: Future[Any]) -> None:
    if future.done():
        return
    if task.cancelled():
        if not future.cancel():  # already running: the pool was closed under it
            future.set_exception(TaskCancelledError(f"{task!r} was cancelled"))
        return
    exception = task.exception()
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(task.result())
