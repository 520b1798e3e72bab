"""Helpers for testing code that uses a pool: run its tasks in-process, and swap the pool of a FastAPI app.

`InlinePool` has the `procpool.Pool` surface (``run``, ``submit``, ``map``, ``stream``, ``queued``,
``options``, ``stats``, ``async with``) but runs its tasks in a thread of the calling process, one at a time: no worker
process to start, breakpoints and mocks work, coverage sees the code, and the event loop stays free
as it would with a real pool. Functions, arguments and results still go through pickle, so a test
fails where a real pool would.

`override_pool` puts a pool (inline, or a real one-worker `procpool.Pool`) in place of the app's
own for the endpoints that take it through `procpool.integrations.fastapi`.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ._api import Pool, PoolFacade, PoolOptions
from ._child import END, call, complete, describe, item_source, new_event_loop
from ._core import (
    Backlog,
    BacklogClosed,
    Deadlines,
    Job,
    Outstanding,
    PoolObserver,
    PoolState,
    PoolStats,
    StreamLink,
    leave_task_group,
    used_from_another_thread,
)
from ._errors import InitializerError, PoolClosedError
from ._transport import dumps, dumps_for_transport, pack_exception, unpack_exception, wire

if TYPE_CHECKING:
    from fastapi import FastAPI


class InlinePool(PoolFacade):
    """A pool with the `procpool.Pool` surface whose tasks run in this process, one at a time,
    each in a thread.

    Tasks run in submission order, in a thread so that the event loop goes on meanwhile; an
    ``async def`` function runs on an event loop of its own in that thread, as it would in a
    worker. Exceptions are raised as themselves, with their traceback in this process.
    ``workers`` is 1, so ``pool.map`` and `QueueLimit` see a one-worker pool. It offers ``run``,
    ``submit``, ``map``, ``starmap``, ``stream``, ``options`` (with ``timeout``), ``stats`` and
    ``queued``; not ``executor`` (test that against a real ``procpool.Pool(1)``).

    ``stream`` runs the whole generator in one thread, as a worker would: never more than a few
    items ahead of the consumer, closed (its ``finally`` blocks run) when the consumer leaves
    early, its error raised after the items before it.

    One difference from a real pool: a running task cannot be stopped. Cancelling it, its
    ``timeout`` passing, or leaving ``async with`` by an exception ends it at once for its
    awaiting code (with `TaskCancelledError`, or `TimeoutError` for a timeout), while the call
    runs to its end in its thread and its result is dropped, as with ``kill_on_cancel=False``;
    a stream's generator is closed when it yields its next item.

    Args:
        initializer: called as ``initializer(*initargs)`` on entry, in this process.
        initargs: arguments for ``initializer``.

    Raises:
        TypeError: ``initializer`` is not callable.
    """

    _backend: _InlineBackend

    def __init__(self, *, initializer: Callable[..., object] | None = None, initargs: Iterable[Any] = ()) -> None:
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, not {type(initializer).__name__}")
        self._kill_on_cancel = True
        self._backend = _InlineBackend(initializer, initargs)

    @property
    def workers(self) -> int:
        """1: calls run one at a time."""
        return 1

    def __repr__(self) -> str:
        return f"<procpool.testing.InlinePool {self._backend.state.value}>"

    def stats(self) -> PoolStats:
        """A snapshot in the shape of `procpool.Pool.stats`: one worker (this process), alive
        while the pool is open, busy while a call runs; counts and times of the tasks run here."""
        backend = self._backend
        alive = int(backend.state is PoolState.OPEN)
        return backend.observer.stats(workers=1, alive=alive, busy=int(backend.running), queued=backend.queued)

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
        return PoolOptions(self._backend, kill_on_cancel=kill_on_cancel, timeout=timeout, retries=retries)


class _InlineBackend:
    """Runs jobs one at a time, each in a thread of this process."""

    workers = 1
    admission = None
    kill_grace = 0.0
    workers_import_main = True  # the main script is this process's own
    memory_files = None  # nothing crosses to another process
    loop = None  # `check_open` checks the thread only

    def __init__(self, initializer: Callable[..., object] | None, initargs: Iterable[Any]) -> None:
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self.state = PoolState.NEW
        self.observer = PoolObserver(None)
        self.running = False
        self._thread: int | None = None
        self._job_ids = itertools.count(1)
        self._backlog = Backlog()
        self._outstanding = Outstanding(self.observer)
        self._task_group: TaskGroup | None = None
        self._deadlines: Deadlines | None = None
        self._stopped = anyio.Event()

    @property
    def queued(self) -> int:
        """How many submitted tasks are waiting for their turn (not yet started, not cancelled)."""
        return len(self._backlog)

    def new_job_id(self) -> int:
        return next(self._job_ids)

    def check_open(self) -> None:
        if self.state is not PoolState.OPEN:
            state = (
                "not started: use it as `async with InlinePool() as pool:`" if self.state is PoolState.NEW else "closed"
            )
            raise PoolClosedError(f"the InlinePool is {state}")
        if threading.get_ident() != self._thread:
            raise used_from_another_thread("an InlinePool", has_executor=False)

    def submit(self, job: Job) -> None:
        self._outstanding.add(job)
        self._backlog.put(job)

    def set_deadline(self, job: Job, deadline: float, timeout: float) -> None:
        assert self._deadlines is not None
        self._deadlines.add(job, deadline, timeout)

    async def open(self) -> None:
        if self.state is not PoolState.NEW:
            raise RuntimeError("an InlinePool can be entered only once; create a new one")
        self.state = PoolState.CLOSING  # not open for tasks until the initializer has run
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except Exception as exc:
                self.state = PoolState.CLOSED
                raise InitializerError("the pool's initializer raised") from exc
        self._thread = threading.get_ident()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._serve)
        self._deadlines = Deadlines(self._task_group.start_soon)
        self.state = PoolState.OPEN

    async def close(self) -> None:
        if self.state is PoolState.NEW:
            self.state = PoolState.CLOSED
            return
        if self.state is PoolState.OPEN:
            self.state = PoolState.CLOSING
        self._backlog.close()
        await self._stopped.wait()
        if self._deadlines is not None:
            self._deadlines.stop()

    async def exit(self, *, abort: bool) -> None:
        task_group, self._task_group = self._task_group, None
        if abort:
            self._backlog.close()
        try:
            # An abort cancels the group's tasks: the running call's wait and the deadlines' task.
            await leave_task_group(task_group, cancelling=self._outstanding.jobs() if abort else None)
        finally:
            self.state = PoolState.CLOSED

    async def _serve(self) -> None:
        try:
            while True:
                try:
                    job = await self._backlog.get()
                except BacklogClosed:
                    return
                self.running = True
                try:
                    await _run_in_thread(job)
                finally:
                    self.running = False
        finally:
            self._stopped.set()


async def _run_in_thread(job: Job) -> None:
    fn_bytes, args_bytes = job.fn_bytes, job.args_bytes
    if not job.take():
        return  # cancelled while queued
    # A thread cannot be stopped: cancelling the running job settles it at once, and the call
    # runs to its end in its thread, its result dropped.
    job.on_cancel = Job.cancel_now
    link = job.stream
    outcome: bytes | BaseException
    try:
        if link is None:
            job.began()
            # Abandoned only when the pool is torn down: the call then ends on its own, unawaited.
            outcome = await anyio.to_thread.run_sync(_timed_call, job, fn_bytes, args_bytes, abandon_on_cancel=True)
        else:
            outcome = await _stream(job, link, fn_bytes, args_bytes)
    except Exception as exc:
        outcome = exc
    try:
        job.received_at = time.monotonic()
        if isinstance(outcome, BaseException):
            job.fail(outcome)
        else:
            job.succeed(outcome)
    finally:
        job.cancel_now()  # a no-op unless the pool was torn down while the call ran


def _timed_call(job: Job, fn_bytes: bytes, args_bytes: bytes) -> bytes | BaseException:
    """`_call`, noting in ``job`` when it started and finished, as a worker reports it: its
    pickled result, or its exception, returned rather than raised: a StopIteration raised would
    reach the loop as RuntimeError (PEP 479)."""
    job.started_at = time.monotonic()
    try:
        return _call(fn_bytes, args_bytes, job.description)
    except Exception as exc:
        return exc
    finally:
        job.finished_at = time.monotonic()


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


class _InlineStream:
    """One stream between the thread that runs its generator and the event loop, neither of
    which ever waits on the other: the generator's thread waits for credit, and a second
    thread, on the loop's behalf, waits for items.

    The credit and CLOSE frames are those a worker reads (`StreamLink` sends them here instead).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._credit = 0
        self._stopped = False  # CLOSE came, or the job settled: the generator must stop
        self._items: deque[bytes] = deque()
        self._ended = False  # the generator's thread is done: no more items

    def send(self, frame: list[bytes]) -> None:
        """From `StreamLink`, on the loop's thread: a CREDIT or a CLOSE frame."""
        data = b"".join(frame)
        _, kind, _ = wire.HEADER.unpack_from(data)
        with self._changed:
            if kind == wire.CREDIT:
                self._credit += wire.CREDIT_BODY.unpack_from(data, wire.HEADER.size)[0]
            else:
                self._stopped = True
            self._changed.notify_all()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def take_credit(self) -> bool:
        """In the generator's thread: wait until one more item may go; False if it must stop."""
        with self._changed:
            while self._credit == 0 and not self._stopped:
                self._changed.wait()
            if self._stopped:
                return False
            self._credit -= 1
            return True

    def put(self, body: bytes) -> None:
        with self._changed:
            self._items.append(body)
            self._changed.notify_all()

    def wait_for_items(self) -> tuple[list[bytes], bool]:
        """In a thread of the loop's: the items put since the last call, once there are some or
        the stream has ended; and whether it has."""
        with self._changed:
            while not self._items and not self._ended:
                self._changed.wait()
            items = list(self._items)
            self._items.clear()
            return items, self._ended


async def _stream(job: Job, link: StreamLink, fn_bytes: bytes, args_bytes: bytes) -> bytes | BaseException:
    """Run a stream's generator in a thread and hand its items to ``link`` in order, all of them
    before its end: its pickled result, or its exception."""
    stream = _InlineStream()
    task = job.task
    assert task is not None  # taken, so not settled
    task.add_done_callback(lambda _: stream.stop())  # cancelled or past its timeout
    link.attach(job.id, stream.send)
    job.began()
    async with anyio.create_task_group() as group:
        group.start_soon(_deliver, stream, link)
        try:
            # Abandoned only when the pool is torn down: the job is cancelled, which stops it.
            outcome = await anyio.to_thread.run_sync(
                _timed_stream, job, fn_bytes, args_bytes, stream, abandon_on_cancel=True
            )
        finally:
            stream.end()  # _deliver hands on the last items, then returns
    return outcome  # only now, after its items


async def _deliver(stream: _InlineStream, link: StreamLink) -> None:
    ended = False
    while not ended:
        # Abandoned if cancelled: end() wakes the thread.
        items, ended = await anyio.to_thread.run_sync(stream.wait_for_items, abandon_on_cancel=True)
        for body in items:
            link.deliver(body)


def _timed_stream(job: Job, fn_bytes: bytes, args_bytes: bytes, stream: _InlineStream) -> bytes | BaseException:
    """Run a pickled stream as a worker would, noting when it started and finished: its pickled
    result, or the exception to raise."""
    job.started_at = time.monotonic()
    try:
        return _run_stream(fn_bytes, args_bytes, stream)
    except Exception as exc:
        return exc
    except BaseException as exc:
        # As from a worker: KeyboardInterrupt, SystemExit... must not act on this process.
        return unpack_exception(pack_exception(exc))
    finally:
        job.finished_at = time.monotonic()


def _run_stream(fn_bytes: bytes, args_bytes: bytes, stream: _InlineStream) -> bytes:
    fn = pickle.loads(fn_bytes)
    args, kwargs = pickle.loads(args_bytes)
    runner: asyncio.Runner | None = None  # an async generator's loop, made if one is needed

    def await_result(awaitable: Awaitable[object]) -> object:
        nonlocal runner
        if runner is None:
            runner = asyncio.Runner(loop_factory=new_event_loop)
        return complete(awaitable, runner)

    try:
        next_item, close = item_source(fn(*args, **kwargs), await_result)
        try:
            while stream.take_credit() and (item := next_item()) is not END:
                stream.put(dumps_for_transport(item, f"an item of {describe(fn)}"))
        finally:
            if close is not None:
                close()
    finally:
        if runner is not None:
            runner.close()
    return dumps(None)


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
