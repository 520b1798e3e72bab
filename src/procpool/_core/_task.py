"""`Task`: the handle of one submitted call: awaitable, cancellable, inspectable."""

from __future__ import annotations

import enum
import logging
import pickle
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from .._errors import InvalidStateError, SerializationError, TaskCancelledError
from .._transport._wire import Body
from ._observe import TaskTiming

if TYPE_CHECKING:
    from ._stream import StreamLink

T = TypeVar("T")


class _State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class Task(Generic[T]):
    """A call submitted to a `Pool`: await it for the result, or ``cancel()`` it.

    Awaiting a task returns the function's result or raises the child's exception. If the
    coroutine that awaits it is cancelled, the task is cancelled too; when the task was running
    with ``kill_on_cancel``, the awaiting coroutine sees its cancellation only once the worker
    process is gone.
    """

    def __init__(
        self,
        task_id: int,
        description: str,
        call: tuple[int, bytes, bytes],
        kill_on_cancel: bool,
        on_leave_queue: Callable[[], None] | None = None,
        stream: StreamLink | None = None,
    ) -> None:
        self.id = task_id
        self.description = description
        self.kill_on_cancel = kill_on_cancel
        self._state = _State.QUEUED
        self._call: tuple[int, bytes, bytes] | None = call  # function id, pickled function, pickled arguments
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._cancelled = False
        self._event = anyio.Event()
        self._interrupt: Callable[[], None] | None = None
        self._callbacks: list[Callable[[Task[Any]], None]] = []
        self._on_leave_queue = on_leave_queue
        self._start_gate: Callable[[], bool] | None = None
        self._withdraw: Callable[[Task[Any]], None] | None = None  # takes a cancelled task out of its queue
        self._stream = stream  # set for a `Pool.stream` task: where its items go
        self._submitted_at = time.monotonic()
        self._sent_at: float | None = None
        self._started_at: float | None = None  # these two by the worker's clock, which is the same
        self._finished_at: float | None = None
        self._received_at: float | None = None
        self._progress: tuple[float, float | None] | None = None
        self._progress_callbacks: list[Callable[[float, float | None], object]] = []
        self._retries = 0  # times it may still be re-run after its worker died under it
        self._crashes = 0  # workers that died while running it
        self._timeout: float | None = None  # set once its deadline has passed: the seconds it had

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else self._state.value
        return f"<procpool.Task {self.id} {self.description} {state}>"

    # -- the public handle ---------------------------------------------------------------------

    def done(self) -> bool:
        """True once the task has a result, an exception, or was cancelled."""
        return self._state is _State.DONE

    def running(self) -> bool:
        """True while the task runs in a worker."""
        return self._state is _State.RUNNING

    def cancelled(self) -> bool:
        """True if the task ended by cancellation."""
        return self._cancelled

    def cancel(self) -> bool:
        """Cancel the task. Returns False if it was already done.

        A queued task never starts. A running task has its worker killed and replaced when the
        task was submitted with ``kill_on_cancel=True`` (the default); otherwise it runs to its end
        and its result is dropped. The task counts as done only once that has happened.
        """
        if self._state is _State.DONE:
            return False
        interrupt = self._interrupt if self._state is _State.RUNNING else None
        if interrupt is None or not self.kill_on_cancel:
            if self._state is _State.QUEUED and self._withdraw is not None:
                self._withdraw(self)
            self._set_cancelled()
        if interrupt is not None:
            # The worker's slot stops it: if the worker has not started it yet, it is told to skip
            # it; if it runs and kill_on_cancel is set, the worker is killed, then the task is done.
            interrupt()
        return True

    @property
    def timing(self) -> TaskTiming:
        """When the task was submitted, sent, started, finished and received (see `TaskTiming`)."""
        return TaskTiming(self._submitted_at, self._sent_at, self._started_at, self._finished_at, self._received_at)

    @property
    def progress(self) -> tuple[float, float | None] | None:
        """The latest ``(done, total)`` the task reported with `procpool.report_progress`, or None."""
        return self._progress

    def add_progress_callback(self, callback: Callable[[float, float | None], object]) -> None:
        """Call ``callback(done, total)`` in the event loop's thread each time the task reports
        progress with `procpool.report_progress`. Reports come at most every 50 ms, and the last."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self._progress_callbacks.append(callback)

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
        if self._state is not _State.DONE:
            raise InvalidStateError(f"{self!r} is not done yet: await it first")
        if self._cancelled:
            raise TaskCancelledError(f"{self!r} was cancelled")
        return self._exception

    async def wait(self) -> T:
        """Wait for the task and return its result (the same as ``await task``)."""
        if self._state is not _State.DONE:
            try:
                await self._event.wait()
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    self.cancel()
                    await self._event.wait()
                raise
        return self.result()

    def __await__(self) -> Generator[Any, None, T]:
        return self.wait().__await__()

    # -- used by the pool ----------------------------------------------------------------------

    async def _finished(self) -> None:
        """Wait until done, without cancelling the task if the waiter is cancelled."""
        await self._event.wait()

    def _set_start_gate(self, gate: Callable[[], bool]) -> None:
        """``gate()`` is asked once, as the task is about to start; False cancels it instead."""
        self._start_gate = gate

    def _add_done_callback(self, callback: Callable[[Task[Any]], None]) -> None:
        if self._state is _State.DONE:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _start(self, interrupt: Callable[[], None]) -> tuple[int, bytes, bytes] | None:
        """Mark the task running and hand over its call; None if it was cancelled while queued.

        The call is kept until the task is done, so a task that a dead worker never started can
        be sent again (`_requeue`).
        """
        call = self._call
        if self._state is not _State.QUEUED or call is None:
            return None
        if self._start_gate is not None and not self._start_gate():
            self._set_cancelled()  # vetoed: its concurrent.futures.Future was cancelled meanwhile
            return None
        self._leave_queue()
        self._state = _State.RUNNING
        self._interrupt = interrupt
        return call

    def _requeue(self) -> None:
        """Back to the queue: it was sent to a worker that died or was killed before starting it."""
        if self._state is _State.RUNNING:
            self._state = _State.QUEUED
            self._interrupt = None

    def _set_progress(self, done: float, total: float | None) -> None:
        if self._state is _State.DONE:
            return
        self._progress = (done, total)
        for callback in self._progress_callbacks:
            try:
                callback(done, total)
            except Exception:  # the task goes on: a broken display is no reason to fail it
                logging.getLogger("procpool").exception("a progress callback of %r raised", self)

    def _set_result_bytes(self, body: Body) -> None:
        if self._state is _State.DONE:
            return  # cancelled without killing: the result is dropped
        try:
            result = pickle.loads(body)
        except Exception as exc:
            error = SerializationError(f"the result of {self.description} could not be unpickled: {exc!r}")
            error.__cause__ = exc
            self._set_exception(error)
        else:
            self._result = result
            self._finish()

    def _set_exception(self, exception: BaseException) -> None:
        if self._state is not _State.DONE:
            self._exception = exception
            self._finish()

    def _set_cancelled(self) -> None:
        if self._state is not _State.DONE:
            if self._timeout is not None:
                message = f"{self.description} did not finish within its {self._timeout:g} s timeout"
                self._exception = TimeoutError(message)
            else:
                self._cancelled = True
            self._finish()

    def _expire(self, timeout: float) -> None:
        """Its deadline passed: stop it as a cancel would, but it ends with `TimeoutError`."""
        if self._state is not _State.DONE:
            self._timeout = timeout
            self.cancel()

    def _leave_queue(self) -> None:
        if self._on_leave_queue is not None:
            self._on_leave_queue()
            self._on_leave_queue = None

    def _finish(self) -> None:
        self._leave_queue()
        self._state = _State.DONE
        self._call = None
        self._interrupt = None
        self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)
