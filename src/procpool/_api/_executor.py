"""`PoolExecutor`: a `concurrent.futures.Executor` view of a pool, usable from any thread."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio.from_thread
from anyio.lowlevel import EventLoopToken

from .._child import ChunkRunner
from .._core import Task
from .._errors import TaskCancelledError

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
        future: Future[T] = Future()
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
        chunksize: int = 1,
    ) -> Iterator[T]:
        """Like builtin ``map``, run on the pool; ``chunksize`` items travel in one task.

        Raises:
            TimeoutError: from the returned iterator, if a result is not ready ``timeout`` seconds
                after the call.
            TypeError: ``timeout`` is not a number or None.
        """
        if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)):
            raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r:.60}")
        if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer, not {chunksize!r}")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        arguments = zip(*iterables, strict=False)
        chunks = iter(lambda: tuple(itertools.islice(arguments, chunksize)), ())
        results: Iterator[list[T]] = super().map(ChunkRunner(fn), chunks, timeout=timeout)
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
                "shutdown(wait=True) from the event loop's thread would block the loop that completes "
                "the futures; use shutdown(wait=False) or await pool.aclose()"
            )
        futures.wait(unfinished)

    # -- crossing into the event loop ------------------------------------------------------------

    def _in_loop(self, fn: Callable[..., T], *args: Any) -> T:
        if threading.get_ident() == self._loop_thread:
            return fn(*args)
        return anyio.from_thread.run_sync(fn, *args, token=self._token)

    def _submit_in_loop(
        self, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Task[Any]:
        # Future.cancel() may come from any thread; whichever of it and the task's start comes
        # first wins. Asked once: a task run again after its worker died has a running future.
        task = self._pool._submit(fn, args, kwargs, start_gate=future.set_running_or_notify_cancel)
        task.add_done_callback(lambda done: _copy_outcome(done, future))
        return task

    def _on_future_done(self, future: Future[Any], task: Task[Any]) -> None:
        with self._lock:
            self._futures.discard(future)
        if future.cancelled() and not task.done():
            with contextlib.suppress(RuntimeError):  # the event loop is gone, and the workers with it
                self._in_loop(task.cancel)


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
