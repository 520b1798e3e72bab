"""`Task`: the user's handle on one submitted call: awaitable, cancellable, inspectable.

Its states are those of a `concurrent.futures.Future`: pending, running, then finished or
cancelled, never back. Only its `Job` (the backend's record, `_job.py`) moves it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from .._errors import InvalidStateError, TaskCancelledError
from ._observe import TaskTiming

if TYPE_CHECKING:
    import trio

    from ._job import Job

T = TypeVar("T")

_log = logging.getLogger("procpool")


class _State(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


# The states as module globals, for the comparisons each call makes: on Python 3.11 a member looked
# up on its enum class costs about 85 ns (`EnumType.__getattr__` keeps the lookup off its fast
# path), a global about 10, and a tiny task makes some twenty such lookups (`_job` has its own).
_PENDING, _RUNNING, _FINISHED, _CANCELLED = _State.PENDING, _State.RUNNING, _State.FINISHED, _State.CANCELLED


class Task(Generic[T]):
    """A call submitted to a pool: await it for the result, or ``cancel()`` it.

    Its states follow `concurrent.futures.Future`: *pending* while it waits for a worker (also
    when it has been sent ahead to a worker still busy with another task), *running* once its
    worker runs it, then *done*: finished (a result or an exception) or cancelled.

    Awaiting a task returns the function's result or raises the child's exception. If the
    coroutine that awaits it is cancelled, the task is cancelled too; when the task was running
    with ``kill_on_cancel``, the awaiting coroutine sees its cancellation only once the worker
    process is gone.
    """

    # Slots for its own attributes; a `__dict__` still takes the caller's (``task.index = i``), as
    # asyncio's futures and `concurrent.futures.Future` do.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_callbacks",
        "_exception",
        "_job",
        "_loop",
        "_name",
        "_on_done",
        "_progress",
        "_progress_callbacks",
        "_result",
        "_state",
        "_waiters",
        "id",
    )

    def __init__(self, job: Job) -> None:
        self.id = job.id
        self._name = job.name
        # Kept once done too (settled, it holds nothing of the call's): its times are the task's.
        self._job = job
        self._state = _PENDING
        self._result: T | None = None
        self._exception: BaseException | None = None
        # What awaits it: made only when something does. On asyncio a plain future, woken
        # without an extra task switch; on trio the waiting trio task itself, rescheduled.
        self._waiters: list[asyncio.Future[None] | trio.lowlevel.Task] = []
        # asyncio's loop its waiters wait in, set by a backend that checks calls come from its own
        # loop; None: the running loop's (trio's, or asyncio's as its getter says, at a cost).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callbacks: list[Callable[[Task[T]], object]] | None = None  # made by the first one
        # The backend's own bookkeeping (see `Outstanding`), called before the user's callbacks;
        # apart from them, as every task has one and it never raises.
        self._on_done: Callable[[Task[T]], None] | None = None
        self._progress: tuple[float, float | None] | None = None
        self._progress_callbacks: list[Callable[[float, float | None], object]] | None = None

    def __repr__(self) -> str:
        return f"<procpool.Task {self.id} {self.description} {self._state.value}>"

    @property
    def description(self) -> str:
        """How messages name the task, e.g. ``"square() [task 3]"``."""
        return describe_call(self._name, self.id)

    @property
    def kill_on_cancel(self) -> bool:
        """Whether cancelling the task while it runs kills its worker (else its result is dropped)."""
        return self._job.kill_on_cancel

    def done(self) -> bool:
        """True once the task has a result, an exception, or was cancelled."""
        state = self._state  # compared by identity: an enum's hash is a Python call, and this is hot
        return state is _FINISHED or state is _CANCELLED

    def running(self) -> bool:
        """True while a worker runs the task (not while it waits, queued or sent ahead)."""
        return self._state is _RUNNING

    def cancelled(self) -> bool:
        """True if the task ended by cancellation."""
        return self._state is _CANCELLED

    def cancel(self) -> bool:
        """Cancel the task. Returns False if it was already done.

        A pending task never starts: it is cancelled at once (one sent ahead to a busy worker is
        skipped there). A running task has its worker killed and replaced when the task was
        submitted with ``kill_on_cancel=True`` (the default), and counts as cancelled once the
        worker is gone; otherwise it is cancelled at once, runs to its end, and its result is
        dropped.
        """
        return self._job.cancel()

    @property
    def timing(self) -> TaskTiming:
        """When the task was submitted, sent, started, finished and received (see `TaskTiming`)."""
        job = self._job
        return TaskTiming(job.submitted_at, job.sent_at, job.started_at, job.finished_at, job.received_at)

    @property
    def progress(self) -> tuple[float, float | None] | None:
        """The latest ``(done, total)`` the task reported with `procpool.report_progress`, or None."""
        return self._progress

    def add_progress_callback(self, callback: Callable[[float, float | None], object]) -> None:
        """Call ``callback(done, total)`` in the event loop's thread each time the task reports
        progress with `procpool.report_progress`. Reports come at most every 50 ms, and the last."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        if self._progress_callbacks is None:
            self._progress_callbacks = []
        self._progress_callbacks.append(callback)

    def add_done_callback(self, callback: Callable[[Task[T]], object]) -> None:
        """Call ``callback(task)`` in the event loop's thread once the task is done (at once if
        it is). An exception from the callback is logged and ends nothing else."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        if self.done():
            self._call(callback)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def result(self) -> T:
        """The result of a done task; raises its exception, or `TaskCancelledError`.

        Raises:
            InvalidStateError: the task is not done yet.
        """
        exception = self.exception()
        if exception is not None:
            raise exception
        return self._result  # type: ignore[return-value]

    def exception(self) -> BaseException | None:
        """The exception of a done task, or None if it succeeded.

        Raises:
            TaskCancelledError: the task was cancelled.
            InvalidStateError: the task is not done yet.
        """
        if self._state is _CANCELLED:
            raise TaskCancelledError(f"{self!r} was cancelled")
        if self._state is not _FINISHED:
            raise InvalidStateError(f"{self!r} is not done yet: await it first")
        return self._exception

    async def wait(self) -> T:
        """Wait for the task and return its result (the same as ``await task``)."""
        if not self.done():
            try:
                await self._wait_done()
            except anyio.get_cancelled_exc_class():
                await self._cancel_and_wait()
                raise
        return self._outcome()

    def __await__(self) -> Generator[Any, None, T]:
        # `wait` inlined for asyncio, where a coroutine less per call is felt by tiny tasks.
        state = self._state
        if state is not _FINISHED and state is not _CANCELLED:
            loop = self._loop or asyncio._get_running_loop()  # None under trio; the public getter raises
            if loop is None:
                return (yield from self.wait().__await__())
            future = loop.create_future()
            self._waiters.append(future)
            try:
                yield from future
            except BaseException as exc:
                self._forget_waiter(future)
                if isinstance(exc, asyncio.CancelledError):
                    yield from self._cancel_and_wait().__await__()
                raise
        if self._exception is None and self._state is _FINISHED:
            return self._result  # type: ignore[return-value]
        return awaited_result(self)

    def _outcome(self) -> T:
        if self._state is _FINISHED and self._exception is None:
            return self._result  # type: ignore[return-value]
        return awaited_result(self)

    async def _cancel_and_wait(self) -> None:
        """The wait for it was cancelled: so is the task, which may take its worker's end."""
        with anyio.CancelScope(shield=True):
            self.cancel()
            await self._wait_done()

    async def _wait_done(self) -> None:
        """Wait until the task is done; cancelling this wait does not cancel the task."""
        if self.done():
            return
        loop = self._loop or asyncio._get_running_loop()  # None under trio; the public getter raises
        if loop is None:
            await self._trio_wait()
            return
        future = loop.create_future()
        self._waiters.append(future)
        try:
            await future
        finally:
            self._forget_waiter(future)

    async def _trio_wait(self) -> None:
        """trio's own wait, with no event made for it (an ``anyio.Event`` cost some thirty Python
        calls per task): the waiting task parks until `_finish` reschedules it; a cancellation
        takes it off the waiters first, so it is never rescheduled twice."""
        lowlevel = sys.modules["trio"].lowlevel  # trio runs this: it is imported
        waiter = lowlevel.current_task()
        self._waiters.append(waiter)

        def abort(raise_cancel: object) -> trio.lowlevel.Abort:
            self._waiters.remove(waiter)
            return lowlevel.Abort.SUCCEEDED  # type: ignore[no-any-return]

        await lowlevel.wait_task_rescheduled(abort)

    def _forget_waiter(self, future: asyncio.Future[None]) -> None:
        if not future.done() or future.cancelled():  # its wait was cancelled
            with contextlib.suppress(ValueError):
                self._waiters.remove(future)

    # -- moved on by its job only -------------------------------------------------------------

    def _set_progress(self, done: float, total: float | None) -> None:
        if self.done():
            return
        self._progress = (done, total)
        for callback in self._progress_callbacks or ():
            try:
                callback(done, total)
            except Exception:  # the task goes on: a broken display is no reason to fail it
                _log.exception("a progress callback of %r raised", self)

    def _finish(self, state: _State, result: T | None = None, exception: BaseException | None = None) -> None:
        """Done: FINISHED with ``result`` or ``exception``, or CANCELLED."""
        self._result = result
        self._exception = exception
        self._state = state
        waiters = self._waiters
        if waiters:  # none is added once done, and waking one runs none of its code now: cleared after
            for waiter in waiters:
                if not isinstance(waiter, asyncio.Future) and _is_trio_task(waiter):
                    sys.modules["trio"].lowlevel.reschedule(waiter)
                    continue
                try:  # noqa: SIM105 - contextlib.suppress would cost two Python calls per task
                    waiter.set_result(None)  # type: ignore[union-attr]  # the loop's future: asyncio's, or its own kind
                except asyncio.InvalidStateError:  # cancelled: its wait ends by itself
                    pass
            waiters.clear()
        on_done = self._on_done
        if on_done is not None:
            self._on_done = None
            on_done(self)
        if self._callbacks:
            callbacks, self._callbacks = self._callbacks, None
            for callback in callbacks:
                self._call(callback)

    def _call(self, callback: Callable[[Task[T]], object]) -> None:
        try:
            callback(self)
        except BaseException:  # SystemExit too: one callback's failure must not stop the pool
            _log.exception("a done callback of %r raised", self)


def _is_trio_task(waiter: object) -> bool:
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(waiter, trio.lowlevel.Task)


def describe_call(name: str, task_id: int) -> str:
    return f"{name}() [task {task_id}]"


async def wait_done(task: Task[Any]) -> None:
    """Wait until ``task`` is done, without cancelling it if this wait is cancelled."""
    await task._wait_done()


def awaited_result(task: Task[T], *, iterating: bool = False) -> T:
    """The result of a done ``task``, for a coroutine to return, or its exception to raise there.

    StopIteration cannot leave a coroutine (Python turns it into a bare RuntimeError, PEP 479),
    nor StopAsyncIteration an ``__anext__`` (``iterating``: the ``async for`` would end as if no
    results were left), so either comes as the cause of a RuntimeError that says so (asyncio's
    futures do the same with StopIteration, from Python 3.13).
    """
    exception = task.exception()
    if exception is None:
        return task._result  # type: ignore[return-value]
    if isinstance(exception, StopIteration):
        raise RuntimeError(
            f"{task.description} raised StopIteration, which an await cannot raise (a coroutine turns it "
            "into RuntimeError, PEP 479); it is this error's __cause__, with its value"
        ) from exception
    if iterating and isinstance(exception, StopAsyncIteration):
        raise RuntimeError(
            f"{task.description} raised StopAsyncIteration, which would end an async for as if no results "
            "were left; it is this error's __cause__, with its value"
        ) from exception
    raise exception
