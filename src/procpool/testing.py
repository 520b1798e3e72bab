"""Helpers for testing code that uses a pool: run its tasks in-process, and swap the pool of a FastAPI app.

`InlinePool` has the `procpool.Pool` surface (``run``, ``submit``, ``map``, ``queued``, ``options``,
``stats``, ``async with``) but runs its tasks in a thread of the calling process, one at a time: no worker
process to start, breakpoints and mocks work, coverage sees the code, and the event loop stays free
as it would with a real pool. Functions, arguments and results still go through pickle, so a test
fails where a real pool would.

`override_pool` puts a pool (inline, or a real one-worker `procpool.Pool`) in place of the app's
own for the endpoints that take it through `procpool.integrations.fastapi`.
"""

from __future__ import annotations

import itertools
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ._api._pool import Pool, PoolOptions, _State, _TaskBookkeeping, _Verbs
from ._child import call
from ._core._backlog import Backlog, BacklogClosed
from ._core._deadlines import Deadlines
from ._core._observe import PoolObserver, PoolStats
from ._core._task import Task
from ._errors import InitializerError, PoolClosedError
from ._transport._pickling import dumps_for_transport, pack_exception, unpack_exception

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ._core._stream import StreamLink


class InlinePool(_Verbs, _TaskBookkeeping):
    """A pool with the `procpool.Pool` surface whose tasks run in this process, one at a time,
    each in a thread.

    Tasks run in submission order, in a thread so that the event loop goes on meanwhile; an
    ``async def`` function runs on an event loop of its own in that thread, as it would in a
    worker. Exceptions are raised as themselves, with their traceback in this process.
    ``workers`` is 1, so ``pool.map`` and `QueueLimit` see a one-worker pool. It offers ``run``,
    ``submit``, ``map``, ``starmap``, ``options`` (with ``timeout``), ``stats`` and ``queued``;
    not ``stream`` or ``executor`` (test those against a real ``procpool.Pool(1)``).

    One difference from a real pool: a running task cannot be stopped. Cancelling it, its
    ``timeout`` passing, or leaving ``async with`` by an exception ends it at once for its
    awaiting code (with `TaskCancelledError`, or `TimeoutError` for a timeout), while the call
    runs to its end in its thread and its result is dropped, as with ``kill_on_cancel=False``.

    Args:
        initializer: called as ``initializer(*initargs)`` on entry, in this process.
        initargs: arguments for ``initializer``.

    Raises:
        TypeError: ``initializer`` is not callable.
    """

    def __init__(self, *, initializer: Callable[..., object] | None = None, initargs: Iterable[Any] = ()) -> None:
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, not {type(initializer).__name__}")
        # `_Verbs` (run/submit/map/starmap) is typed for `Pool`; it uses only `workers`,
        # `_check_open`, `_submit_pickled` and `_kill_grace`, which this class provides.
        self._pool = self  # type: ignore[assignment]
        self._kill_on_cancel = True
        self._kill_grace = 0.0
        self.workers: int = 1
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._state = _State.NEW
        self._thread: int | None = None
        self._task_ids = itertools.count(1)
        self._backlog = Backlog()
        self._outstanding: set[Task[Any]] = set()
        self._task_group: TaskGroup | None = None
        self._deadlines: Deadlines | None = None
        self._observer = PoolObserver(None)
        self._running = False
        self._stopped = anyio.Event()

    def __repr__(self) -> str:
        return f"<procpool.testing.InlinePool {self._state.value}>"

    @property
    def queued(self) -> int:
        """How many submitted tasks are waiting for their turn (not yet started, not cancelled)."""
        return len(self._backlog)

    def stats(self) -> PoolStats:
        """A snapshot in the shape of `procpool.Pool.stats`: one worker (this process), alive
        while the pool is open, busy while a call runs; counts and times of the tasks run here."""
        alive = int(self._state is _State.OPEN)
        return self._observer.stats(workers=1, alive=alive, busy=int(self._running), queued=self.queued)

    def options(self, *, kill_on_cancel: bool = True, timeout: float | None = None, retries: int = 0) -> PoolOptions:
        """A view of this pool with other per-call options, as `procpool.Pool.options`.

        Args:
            kill_on_cancel: accepted for compatibility; a running inline call is never killed.
            timeout: seconds from the call to the result, as in `procpool.Pool.options`: a task
                still queued at its deadline never starts; a running one ends with `TimeoutError`
                for its caller while its call runs on in its thread (see above).
            retries: accepted for compatibility: no worker dies under an inline call.

        Returns:
            A view whose ``run``/``submit``/``map`` submit to this pool.

        Raises:
            TypeError, ValueError: an option has the wrong type or is out of range.
        """
        return PoolOptions(self, kill_on_cancel=kill_on_cancel, timeout=timeout, retries=retries)  # type: ignore[arg-type]

    async def __aenter__(self) -> InlinePool:
        if self._state is not _State.NEW:
            raise RuntimeError("an InlinePool can be entered only once; create a new one")
        self._state = _State.CLOSING  # not open for tasks until the initializer has run
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except Exception as exc:
                self._state = _State.CLOSED
                raise InitializerError("the pool's initializer raised") from exc
        self._thread = threading.get_ident()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._serve)
        self._deadlines = Deadlines(self._task_group.start_soon)
        self._state = _State.OPEN
        return self

    async def aclose(self) -> None:
        """Refuse new tasks and wait for the submitted ones. Safe to call more than once."""
        if self._state is _State.NEW:
            self._state = _State.CLOSED
            return
        if self._state is _State.OPEN:
            self._state = _State.CLOSING
        self._backlog.close()
        await self._stopped.wait()
        if self._deadlines is not None:
            self._deadlines.stop()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._task_group is not None
        task_group, self._task_group = self._task_group, None
        try:
            if exc is None:
                await self.aclose()
            else:
                self._backlog.close()
                for task in list(self._outstanding):
                    task.cancel()
                task_group.cancel_scope.cancel()  # ends the deadlines' task too
        finally:
            await task_group.__aexit__(None, None, None)
            self._state = _State.CLOSED

    async def _serve(self) -> None:
        try:
            while True:
                try:
                    task = await self._backlog.get()
                except BacklogClosed:
                    return
                self._running = True
                try:
                    await _run_in_thread(task)
                finally:
                    self._running = False
        finally:
            self._stopped.set()

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            state = (
                "not started: use it as `async with InlinePool() as pool:`" if self._state is _State.NEW else "closed"
            )
            raise PoolClosedError(f"the InlinePool is {state}")
        if threading.get_ident() != self._thread:
            raise RuntimeError("an InlinePool must be used from the thread running its event loop")

    def _submit_pickled(
        self,
        fn_bytes: bytes,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kill_on_cancel: bool,
        stream: StreamLink | None = None,
    ) -> Task[Any]:
        if stream is not None:
            raise NotImplementedError("InlinePool does not run pool.stream(); test streams with procpool.Pool(1)")
        args_bytes = dumps_for_transport((args, kwargs), f"an argument of {name}")
        task_id = next(self._task_ids)
        call = (0, fn_bytes, args_bytes)  # no function id: nothing caches functions here
        task: Task[Any] = Task(task_id, f"{name}() [task {task_id}]", call, kill_on_cancel)
        task._withdraw = self._backlog.discard
        self._outstanding.add(task)
        task._add_done_callback(self._task_done)
        self._backlog.put(task)
        return task


async def _run_in_thread(task: Task[Any]) -> None:
    # A thread cannot be killed: cancelling the running task just marks it cancelled.
    call = task._start(task._set_cancelled)
    if call is None:
        return  # cancelled while queued
    _, fn_bytes, args_bytes = call
    task._sent_at = time.monotonic()
    try:
        # Abandoned only when the pool is torn down: the call then ends on its own, unawaited.
        result = await anyio.to_thread.run_sync(_timed_call, task, fn_bytes, args_bytes, abandon_on_cancel=True)
    except Exception as exc:
        task._received_at = time.monotonic()
        task._set_exception(exc)
    else:
        task._received_at = time.monotonic()
        task._set_result_bytes(result)
    finally:
        task._set_cancelled()  # a no-op unless the pool was torn down while the call ran


def _timed_call(task: Task[Any], fn_bytes: bytes, args_bytes: bytes) -> bytes:
    """`_call`, noting in ``task`` when it started and finished, as a worker reports it."""
    task._started_at = time.monotonic()
    try:
        return _call(fn_bytes, args_bytes, task.description)
    finally:
        task._finished_at = time.monotonic()


def _call(fn_bytes: bytes, args_bytes: bytes, description: str) -> bytes:
    """Run one pickled call as a worker would: unpickle it, run it, pickle the result."""
    fn = pickle.loads(fn_bytes)
    args, kwargs = pickle.loads(args_bytes)
    try:
        result = call(fn, args, kwargs)
    except Exception:
        raise
    except BaseException as exc:
        # As from a worker: KeyboardInterrupt, SystemExit... must not act on this process.
        raise unpack_exception(pack_exception(exc)) from None
    return dumps_for_transport(result, f"the result of {description}")


@contextmanager
def override_pool(app: FastAPI, pool: Pool | InlinePool) -> Iterator[Pool | InlinePool]:
    """Make the app's endpoints use ``pool`` instead of the one its lifespan starts.

    Overrides `procpool.integrations.fastapi.get_pool` in ``app.dependency_overrides`` (so
    ``PoolDep`` and ``QueueLimit`` hand out ``pool``) and restores the previous override on exit.

    Args:
        app: the FastAPI app.
        pool: an entered `InlinePool`, or an entered `procpool.Pool` (``procpool.Pool(1)``).

    Returns:
        A context manager that yields ``pool``.
    """
    from .integrations.fastapi import get_pool  # FastAPI is imported only by those who use it

    async def overriding_pool() -> Pool | InlinePool:  # async: FastAPI would run a plain function in a thread
        return pool

    overrides = app.dependency_overrides
    previous = overrides.get(get_pool)
    overrides[get_pool] = overriding_pool
    try:
        yield pool
    finally:
        if previous is None:
            overrides.pop(get_pool, None)
        else:
            overrides[get_pool] = previous


__all__ = ("InlinePool", "override_pool")
