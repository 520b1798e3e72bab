"""`Job`: a backend's record of one call, and the one place where a call changes stage.

A call's life is a small state machine::

    QUEUED --take--> SENT --began--> RUNNING --succeed/fail--> settled
      ^                |                |
      +----requeue-----+----------------+   (its worker died; the handle does not notice)
    any stage --cancel/expire/fail--> settled

The user holds a `Task`, the handle; the backend holds the `Job`. A job can be re-queued, sent
again or dropped without touching its handle's state, which only moves forward, as a
`concurrent.futures.Future`'s does: pending (QUEUED, SENT), running (RUNNING), then finished or
cancelled. Settling a job settles its handle and drops everything the job held (payload, handle,
hooks), so a record kept anywhere (a deadline heap, a slot) keeps no result alive.
"""

from __future__ import annotations

import enum
import logging
import pickle
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import SerializationError
from .._transport import loads
from ._task import _CANCELLED as _TASK_CANCELLED
from ._task import _FINISHED as _TASK_FINISHED
from ._task import _PENDING as _TASK_PENDING
from ._task import _RUNNING as _TASK_RUNNING
from ._task import Task, describe_call

if TYPE_CHECKING:
    from .._transport import Body, Received, Spilled
    from ._stream import StreamLink

_log = logging.getLogger("procpool")


class Stage(enum.Enum):
    QUEUED = "queued"  # waits for a worker
    SENT = "sent"  # on its way to a worker, or waiting there behind the task it runs
    RUNNING = "running"  # its worker runs it
    SETTLED = "settled"  # it has an outcome (result, exception, cancelled); its handle is done


# Module globals for the hot path's comparisons, as in `_task` (an enum member's lookup on its
# class is slow on Python 3.11).
_QUEUED, _SENT, _RUNNING, _SETTLED = Stage.QUEUED, Stage.SENT, Stage.RUNNING, Stage.SETTLED


class Job:
    """One call as a backend sees it: payload, stage, retries and crashes, times, and its handle.

    Args:
        job_id: unique in its pool.
        name: the function's name, as messages name the call (`description`).
        fn_bytes: the pickled function.
        args_bytes: the pickled ``(args, kwargs)``.
        buffers: their out-of-band buffers, if any; closed when the job settles.
        kill_on_cancel: cancelling it while it runs kills its worker (True) or drops its result.
        stream: for ``Pool.stream``: where its items go.
    """

    # One made per call: slots make it smaller and quicker to build than an instance dictionary.
    __slots__ = (
        "args_bytes",
        "buffers",
        "buffers_unmapped",
        "crashes",
        "expired_after",
        "finished_at",
        "fn_bytes",
        "fn_id",
        "id",
        "kill_on_cancel",
        "name",
        "on_cancel",
        "received_at",
        "retries",
        "sent_at",
        "size",
        "stage",
        "start_gate",
        "started_at",
        "stream",
        "submitted_at",
        "task",
    )

    def __init__(
        self,
        job_id: int,
        name: str,
        fn_bytes: bytes,
        args_bytes: bytes,
        buffers: Spilled | None = None,
        *,
        kill_on_cancel: bool,
        stream: StreamLink | None = None,
    ) -> None:
        self.id = job_id
        self.name = name
        self.fn_bytes = fn_bytes
        self.args_bytes = args_bytes
        self.buffers = buffers
        # The bytes it carries to a worker that does not cache its function yet: the most it may.
        self.size = len(fn_bytes) + len(args_bytes) + (0 if buffers is None else buffers.size)
        self.kill_on_cancel = kill_on_cancel
        self.stream = stream
        self.buffers_unmapped = False  # its worker said it maps them no more: the file may be reused
        self.fn_id = 0  # set by a backend that caches functions by id
        self.stage = _QUEUED
        self.retries = 0  # times it may still run again after its worker died under it
        self.crashes = 0  # workers that died while it ran or was being received
        self.expired_after: float | None = None  # its timeout, once its deadline has passed
        # Asked once, as the job begins: False cancels it (a concurrent.futures.Future cancelled
        # meanwhile). Never asked again: a job run again after a crash has a running future.
        self.start_gate: Callable[[], bool] | None = None
        # How its holder takes it back on cancel: out of a queue, or stopped in its worker.
        self.on_cancel: Callable[[Job], None] | None = None
        self.submitted_at = time.monotonic()
        self.sent_at: float | None = None
        self.started_at: float | None = None  # these two by the worker's clock (CLOCK_MONOTONIC,
        self.finished_at: float | None = None  # one clock for every process)
        self.received_at: float | None = None
        self.task: Task[Any] | None = Task(self)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.description} {self.stage.value}>"

    @property
    def description(self) -> str:
        """How messages name the call, e.g. ``"square() [task 3]"`` (made when asked: most calls never are)."""
        return describe_call(self.name, self.id)

    @property
    def settled(self) -> bool:
        return self.stage is _SETTLED

    # -- moving on ---------------------------------------------------------------------------

    def take(self) -> bool:
        """The holder is about to send it; False if it must not go (it has settled)."""
        if self.stage is _SETTLED:
            return False
        self.stage = _SENT
        self.sent_at = time.monotonic()
        return True

    def began(self) -> bool:
        """Its worker runs it now: the handle becomes running, unless its start gate vetoes it,
        which cancels it instead. True if it became running here."""
        if self.stage is not _SENT:
            return False
        gate, self.start_gate = self.start_gate, None
        if gate is not None and not _ask(gate, self):
            self.cancel()
            return False
        self.stage = _RUNNING
        task = self.task
        assert task is not None
        if task._state is _TASK_PENDING:  # a run again after a crash is running already
            task._state = _TASK_RUNNING
        return True

    def requeue(self) -> None:
        """Back to the queue (its worker died or was killed before it ended); the handle keeps
        its state: a running handle stays running while its call is run again."""
        if self.stage is not _SETTLED:
            self.stage = _QUEUED
            self.buffers_unmapped = False

    def report_progress(self, done: float, total: float | None) -> None:
        if self.task is not None:
            self.task._set_progress(done, total)

    # -- settling ------------------------------------------------------------------------------

    def succeed(self, body: Body, buffers: Received | None = None) -> None:
        """It returned: unpickle its result, with its out-of-band ``buffers`` (here, after routing,
        so a bad result fails only this job)."""
        if self.stage is _SETTLED:
            return
        try:
            result = pickle.loads(body) if buffers is None else loads(body, buffers)  # the first: a call less
        except BaseException as exc:  # SystemExit or KeyboardInterrupt from a __reduce__ too: this job's alone
            error = SerializationError(f"the result of {self.description} could not be unpickled: {exc!r}")
            error.__cause__ = exc
            self.fail(error)
            return
        task = self._settle()
        if task is not None:
            task._finish(_TASK_FINISHED, result)

    def fail(self, exception: BaseException) -> None:
        task = self._settle()
        if task is not None:
            task._finish(_TASK_FINISHED, exception=exception)

    def cancel_now(self) -> None:
        """Settle it as cancelled, or with `TimeoutError` if its deadline passed."""
        task = self._settle()
        if task is None:
            return
        timeout = self.expired_after
        if timeout is None:
            task._finish(_TASK_CANCELLED)
        else:
            error = TimeoutError(f"{self.description} did not finish within its {timeout:g} s timeout")
            task._finish(_TASK_FINISHED, exception=error)

    def cancel(self) -> bool:
        """Its handle was cancelled (or its deadline passed); False if it had already settled.

        A job that is queued or sent ahead is settled at once and taken back by its holder (a job
        sent ahead is skipped by its worker). A running one is settled at once too when its result
        is only to be dropped; one to be killed is settled by its holder once its worker is gone.
        """
        if self.stage is _SETTLED:
            return False
        stop = self.on_cancel
        if stop is not None:
            stop(self)  # first: a job taken back no longer counts as waiting once it settles
        if not (self.stage is _RUNNING and self.kill_on_cancel and stop is not None):
            self.cancel_now()
        return True

    def expire(self, timeout: float) -> None:
        """Its deadline passed: stop it as a cancel would, but it ends with `TimeoutError`."""
        if self.stage is not _SETTLED:
            self.expired_after = timeout
            self.cancel()

    def _settle(self) -> Task[Any] | None:
        """Mark it settled and drop what it held; its handle, for the caller to give the outcome
        to, or None if it had settled already."""
        task = self.task
        if task is None:
            return None
        self.stage = _SETTLED
        self.task = None
        self.fn_bytes = self.args_bytes = b""
        if self.buffers is not None:
            if self.buffers_unmapped:
                self.buffers.recycle()
            else:
                self.buffers.close()  # a worker may still map it: never written again
            self.buffers = None
        self.on_cancel = self.start_gate = None
        return task


def _ask(gate: Callable[[], bool], job: Job) -> bool:
    try:
        return gate()
    except BaseException:  # a broken gate vetoes its own job, and stops nothing else
        _log.exception("the start gate of %s raised", job.description)
        return False
