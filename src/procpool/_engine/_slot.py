"""One worker slot: runs tasks on its worker process and settles them.

Each slot owns at most one worker process at a time, so every frame reaches the task it names
and a dead worker fails only the task it was running.

The hot path has no task of its own. The `Scheduler` hands a task to an idle slot, which writes
it to the worker there and then (`dispatch`); the channel's readiness callback (`_on_readable`,
see `_channel_io`) settles results, which wakes only the coroutines awaiting them, then gives
the worker more work or reports the slot idle. It settles at most the pool's budget of frames
per loop turn (`ChannelIO.frames_this_turn`) before letting the event loop run its timers and
other tasks, however many frames (results, logs, printed text) come from however many workers.

To keep a worker busy through the round trip, a slot sends tasks ahead of the running one, as
the policy says (`SchedulingPolicy.room_ahead`); a task sent ahead but not started is skipped
if cancelled (CANCEL), is taken back (CANCEL, then requeued once the worker says it skipped it)
when another worker is idle, and goes back to the front of the backlog if its worker dies.

What needs waiting is done by the slot's control task (`run`), woken when it is needed: a
worker's death, killing a cancelled task's worker, recycling, starting a worker for a slot that
has none, idle shrinking, stopping.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from .._core import Backlog, ExitReason, Job, PoolObserver, Stage, TaskStarted, WorkerStarted
from .._errors import PoisonTaskError, WorkerCrashedError
from .._transport import unpack_exception, wire
from . import _reports
from ._channel_io import ChannelIO
from ._healing import Healing
from ._process import WorkerProcess
from ._scheduler import Scheduler

_SENT, _RUNNING = Stage.SENT, Stage.RUNNING  # globals: on Python 3.11 an enum member's lookup is slow (see `_job`)
# The frame kinds and the timing `_settle` reads for every result: a global each, not a module's attribute.
_REPORTS, _UNMAPPED, _ITEM, _CANCELLED, _RESULT, _TIMING = (
    wire.REPORTS,
    wire.UNMAPPED,
    wire.ITEM,
    wire.CANCELLED,
    wire.RESULT,
    wire.TIMING,
)
_TIMING_SIZE = _TIMING.size


class WorkerSlot:
    def __init__(
        self,
        spawn: Callable[[], Awaitable[WorkerProcess]],
        scheduler: Scheduler,
        io: ChannelIO,
        *,
        max_tasks_per_worker: int | None,
        kill_grace: float,
        healing: Healing,
        observer: PoolObserver,
    ) -> None:
        self._spawn = spawn
        self._scheduler = scheduler
        self._policy = scheduler.policy
        self._backlog: Backlog = scheduler.backlog
        self._healing = healing
        self._observer = observer
        self._max_tasks = max_tasks_per_worker
        self._kill_grace = kill_grace
        self.worker: WorkerProcess | None = None
        self._io = io
        self._retiring = False  # the worker takes no more tasks and is replaced once it has none
        self._memory_checked = 0.0
        self._inflight: OrderedDict[int, Job] = OrderedDict()  # sent to the worker, in order
        self._cancelling: set[int] = set()  # told to skip; a result that comes anyway is dropped
        self._dropped: set[int] = set()  # cancelled while sent: no longer waiting to start
        self._taking_back: set[int] = set()  # told to skip, to run elsewhere once it says it did
        self._cancel_sent = self._request_cancel  # every job sent gets it: bound once, not per job
        self._kill_head = False  # the running task was cancelled and its worker must go
        self._died = False  # the channel is at its end
        self._attention = anyio.Event()  # wakes the control task
        self._interruptible: anyio.CancelScope | None = None  # a wait that a wake-up ends
        self._watchers: TaskGroup | None = None  # each worker's `WorkerProcess.watch`, trio's IO
        self._task_time: float | None = None
        self._head_since = 0.0
        self._idle_since = time.monotonic()

    @property
    def waiting(self) -> int:
        """Tasks sent to the worker behind the one it runs, less those cancelled there."""
        if not self._inflight:
            return 0
        dropped = len(self._dropped)
        if dropped:
            queue = list(self._inflight)  # in one step: `stats` reads this from any thread
            if queue and queue[0] in self._dropped:
                dropped -= 1
        return max(0, len(self._inflight) - 1 - dropped)

    @property
    def busy(self) -> bool:
        """The worker runs a task, or is about to: not if all it holds were cancelled while they
        waited (settled already: it only has to say it skipped them), unless it began the first
        before the cancel reached it."""
        if len(self._inflight) > len(self._dropped):
            return True
        queue, worker = list(self._inflight), self.worker  # in one step: `stats` reads this from any thread
        if not queue or worker is None:
            return False
        try:
            return worker.last_began() == queue[0]
        except ValueError:  # its shared memory closed as it exited
            return False

    @property
    def alive(self) -> bool:
        return self.worker is not None and not self.worker.has_exited()

    # -- the hot path: sending -------------------------------------------------------------------

    def dispatch(self, jobs: list[Job]) -> None:
        """Send ``jobs`` to the worker; the first runs at once if the worker is idle."""
        worker = self.worker
        assert worker is not None
        was_idle = not self._inflight
        sent: list[Job] = []
        streams: list[Job] = []
        for job in jobs:
            if not job.take():
                continue  # cancelled meanwhile
            if not self._inflight:
                self._head_since = time.monotonic()
            job.on_cancel = self._cancel_sent
            self._inflight[job.id] = job
            sent.append(job)
            if job.stream is not None:
                streams.append(job)
        if sent:
            worker.dispatched += len(sent)
            # Never waits. Tasks only sent ahead go at the end of the loop turn, together.
            worker.send(worker.encode_calls(sent), soon=not was_idle)
        if was_idle and self._inflight:
            self._began(next(iter(self._inflight.values())))
        for job in streams:
            assert job.stream is not None
            job.stream.attach(job.id, worker.send)
        if not self._inflight:
            self._became_idle()  # all were cancelled meanwhile

    def jobs_ahead(self, head: Job, in_flight: int) -> list[Job]:
        """Jobs from the backlog to send behind ``head`` when ``in_flight`` are on their way."""
        worker = self.worker
        if worker is None or head.stream is not None or self._retiring:
            return []
        room = self._policy.room_ahead(self._task_time, in_flight)
        if self._max_tasks is not None:
            room = min(room, self._max_tasks - worker.dispatched - in_flight)
        if room <= 0:
            return []
        policy = self._policy
        return self._backlog.take_ahead(
            room,
            lambda job: policy.fits_ahead(_call_size(worker, job), job.stream is not None),
            small=policy.large_call,  # what fits whatever the worker caches (`fits_ahead`)
        )

    def _top_up(self) -> None:
        """Send more tasks ahead of the running one, up to what the recent task time calls for."""
        batch = self.jobs_ahead(next(iter(self._inflight.values())), len(self._inflight))
        if batch:
            self.dispatch(batch)

    def _began(self, job: Job) -> None:
        """``job`` is now first in its worker's queue: the worker runs it (it reads and begins
        tasks in order), so its handle becomes running. A job cancelled while it was sent ahead
        has settled: the worker skips it, or its result is dropped."""
        if not job.began():
            return  # settled (or vetoed by its start gate), or marked already
        if self._observer.on_event is not None and job.task is not None and self.worker is not None:
            self._observer.emit(TaskStarted(job.task, self.worker.pid))

    def _became_idle(self) -> None:
        self._idle_since = time.monotonic()
        if self._retiring or self._died or self._kill_head:
            self.wake()
        else:
            self._scheduler.slot_idle(self)

    # -- the hot path: receiving -----------------------------------------------------------------

    def _on_readable(self) -> bool:
        """The channel has something to read (or frames read before wait): settle a turn's
        worth. True if frames are left for the next turn."""
        worker = self.worker
        if worker is None or self._died:
            return False
        allowance = self._io.frames_this_turn()
        if not allowance:
            return True  # the pool's share of this loop turn is spent
        frames = worker.frames
        if not frames and not worker.read():
            self._channel_ended(worker)
            return False
        had_work = bool(self._inflight)
        settle = self._settle
        settled = 0
        while settled < allowance and frames:
            settle(worker, frames.popleft())
            settled += 1
        self._io.settled(settled)
        if had_work:
            self._after_frames(worker)
        return bool(frames)

    def _after_frames(self, worker: WorkerProcess) -> None:
        """Results came: recycle the worker if it is due, else give it more work, or report it idle."""
        if self._kill_head:
            self.wake()
            return
        policy = self._policy
        if policy.recycle(worker.tasks_run, self._max_tasks):
            self._retiring = True  # it has run its share
        elif self._healing.max_memory is not None:
            now = time.perf_counter()
            if policy.memory_due(now, self._memory_checked):
                self._memory_checked = now
                if self._healing.over_memory(worker):
                    self._retiring = True
        if self._retiring:
            self._scheduler.slot_unavailable(self)
            if not self._inflight:
                self.wake()
        elif self._inflight:
            self._top_up()
        else:
            self._became_idle()

    def _settle(self, worker: WorkerProcess, frame: wire.Frame) -> None:
        kind, task_id, body, buffers = frame
        job = self._inflight.get(task_id)
        if kind in _REPORTS:
            _reports.deliver(worker.pid, frame, job)
            return
        if job is None:
            return  # a late frame of a job already settled
        if kind == _UNMAPPED:
            job.buffers_unmapped = True
            return
        if kind == _ITEM:
            if job.stream is not None:
                job.stream.deliver(body, buffers)
            return
        # `_take_out`, inline: once per result. The sets are empty but for cancels and take-backs.
        if self._dropped:
            self._dropped.discard(task_id)
        del self._inflight[task_id]
        if self._cancelling and task_id in self._cancelling:
            self._cancelling.discard(task_id)
            job.cancel_now()
        elif kind == _CANCELLED:  # taken back: it never began there
            self._taking_back.discard(task_id)
            job.requeue()
            self._scheduler.put_front([job])
        else:
            if self._taking_back:
                self._taking_back.discard(task_id)
            worker.tasks_run += 1
            now = time.monotonic()
            sample, self._head_since = now - self._head_since, now
            self._task_time = self._policy.average(self._task_time, sample)
            job.started_at, job.finished_at = _TIMING.unpack_from(body, len(body) - _TIMING_SIZE)
            job.received_at = now
            if job.stage is _SENT:  # not marked yet: its result came in one read with the one before
                self._began(job)
            # The timing ends the body, after the pickle, which unpickling ignores: no view to cut.
            if kind == _RESULT:
                job.succeed(body, buffers)
            else:
                job.fail(unpack_exception(body))
        if self._inflight:
            head = next(iter(self._inflight.values()))
            if head.stage is _SENT and not (self._taking_back and head.id in self._taking_back):
                self._began(head)

    def _channel_ended(self, worker: WorkerProcess) -> None:
        worker.stop_reading()  # end of file stays readable: no more callbacks
        self._died = True
        self._scheduler.slot_unavailable(self)
        self.wake()

    # -- cancelling and taking back --------------------------------------------------------------

    def _request_cancel(self, job: Job) -> None:
        """Called by `Job.cancel` on a job this slot has sent to its worker."""
        if job.id not in self._inflight or job.id in self._cancelling:
            return
        self._cancelling.add(job.id)
        self._taking_back.discard(job.id)
        head_id, head = next(iter(self._inflight.items()))
        if job is head and job.stage is _RUNNING:
            if job.kill_on_cancel:
                self._kill_head = True
                self._scheduler.slot_unavailable(self)
                self.wake()
            return  # it runs to its end; its result is dropped
        self._dropped.add(job.id)
        if self.worker is not None:
            self.worker.send(wire.encode(wire.CANCEL, job.id))  # skip it, if it has not begun
        if job.id == head_id and job.kill_on_cancel:
            # A head cancelled while it was sent ahead has settled: its worker skips it, unless it
            # had begun it before the CANCEL came; then it is killed as a running task would be.
            self._kill_head = True
            self.wake()

    def take_back_due(self) -> float | None:
        if self.waiting <= len(self._taking_back) or self._retiring or self._died:
            return None
        return self._policy.take_back_at(self._head_since, self._task_time)

    def take_back(self) -> None:
        """Ask the worker to skip the tasks waiting behind the running one; each comes back as
        CANCELLED (then it goes to the front of the backlog) or, if the worker had begun it
        already, as its result."""
        worker = self.worker
        assert worker is not None
        frames: list[bytes] = []
        for job_id in itertools.islice(self._inflight, 1, None):
            if job_id not in self._cancelling and job_id not in self._taking_back:
                self._taking_back.add(job_id)
                frames += wire.encode(wire.CANCEL, job_id)
        if frames:
            worker.send(frames)
            worker.nudge()

    # -- the control task ------------------------------------------------------------------------

    def wake(self) -> None:
        """Wake the control task (and end a wait it was told may be cut short)."""
        self._attention.set()
        if self._interruptible is not None:
            self._interruptible.cancel()

    async def run(self, worker: WorkerProcess | None) -> None:
        """Serve tasks until the pool closes and the backlog is drained; then stop the worker."""
        async with anyio.create_task_group() as self._watchers:
            if worker is not None:
                self._set_worker(worker)
            try:
                await self._control()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._shut_down()
                self._watchers.cancel_scope.cancel()  # their workers are gone: nothing to watch

    async def _control(self) -> None:
        while True:
            self._attention = anyio.Event()
            if self._died:
                await self._worker_died()
            elif self._kill_head:
                await self._kill()
            elif self._retiring and not self._inflight:
                await self._replace("recycled")
            elif self.worker is None:
                if self._scheduler.closed and not len(self._backlog):
                    return
                if not len(self._backlog):
                    self._scheduler.slot_dormant(self)
                    await self._attention.wait()  # woken for tasks that wait, or to stop
                    if self._scheduler.closed:
                        continue
                # Started even if another worker took those tasks meanwhile: they came in more
                # than the live workers could take at once.
                await self._start_worker()
            elif self._scheduler.closed and not self._inflight and not len(self._backlog):
                return
            else:
                await self._wait_idle_or_attention()

    async def _wait_idle_or_attention(self) -> None:
        """Wait to be needed; let the worker go once it has idled for ``idle_timeout``."""
        idle_timeout = self._healing.idle_timeout
        if idle_timeout is None:
            await self._attention.wait()
            return
        with anyio.move_on_after(max(0.0, self._idle_since + idle_timeout - time.monotonic())):
            await self._attention.wait()
            return
        idle = not self._inflight and time.monotonic() - self._idle_since >= idle_timeout
        healing = self._healing
        # The most recently used worker gets every task it can, so the coldest idle one goes.
        if idle and healing.live_workers > healing.min_workers and self._scheduler.coldest_idle() is self:
            self._scheduler.slot_unavailable(self)
            await self._retire("idle")
            await healing.drop_spare(self._kill_grace)

    async def _start_worker(self) -> None:
        """Start a worker for a slot that has none, as tasks wait; if it cannot be started,
        the next waiting task fails with the reason (or goes back, if it may run again)."""
        try:
            self._set_worker(await self._healing.restart())
            return
        except Exception as exc:
            error: BaseException = exc
        job = self._backlog.get_nowait()
        if job is None:
            return
        if self._healing.broken is not None:
            job.fail(self._healing.broken_error())
        elif isinstance(error, WorkerCrashedError) and job.retries > 0 and not job.settled:
            job.retries -= 1  # killed during its start-up: the job never ran, try again
            self._scheduler.put_front([job])
        else:
            job.fail(error)

    def _set_worker(self, worker: WorkerProcess, *, ready: bool = True) -> None:
        self.worker = worker
        self._retiring = self._died = self._kill_head = False
        self._task_time = None
        self._healing.live_workers += 1
        assert self._watchers is not None
        self._watchers.start_soon(worker.watch)  # its death ends its channel
        worker.attach(self._io, self._on_readable)
        self._observer.emit(WorkerStarted(worker.pid))
        if ready:
            self._became_idle()

    # -- cancellation, crashes, replacement ---------------------------------------------------

    def _take_out(self, job_id: int) -> Job:
        """Take a job out of the worker's queue: its outcome came, or the worker is gone."""
        self._dropped.discard(job_id)
        return self._inflight.pop(job_id)

    async def _kill(self) -> None:
        """The running task was cancelled with ``kill_on_cancel``: stop its worker."""
        self._kill_head = False
        worker = self.worker
        if worker is None:
            return
        self._drain(worker)  # a head that finished meanwhile needs no kill
        if self._died:
            return
        head = next(iter(self._inflight.values()), None)
        # A head cancelled while it was sent ahead is killed only if its worker began it.
        if head is None or head.id not in self._cancelling or (head.settled and worker.last_began() != head.id):
            self._after_frames(worker)  # nothing to kill: the worker takes tasks again, or is idle
            return
        self._scheduler.slot_unavailable(self)
        worker.stop_reading()
        await worker.terminate(self._kill_grace)
        self._account_for_dead_worker(worker)
        await self._replace("killed")

    def _drain(self, worker: WorkerProcess) -> None:
        """Settle every frame the worker has sent so far."""
        while True:
            while worker.frames:
                self._settle(worker, worker.frames.popleft())
            if not worker.read():
                self._channel_ended(worker)
                return
            if not worker.frames:
                return

    async def _worker_died(self) -> None:
        """The worker's channel is at its end: the worker died, or closed it and is dying."""
        worker = self.worker
        assert worker is not None
        # One that closed its channel and lives on is killed after the grace. A cancel ends the
        # wait at once: nothing more can come from the worker, so the canceller does not wait.
        with anyio.CancelScope() as self._interruptible:
            await worker.wait_exit(self._kill_grace)
        self._interruptible = None
        if worker.exitcode is None:
            await worker.terminate(self._kill_grace)
        self._account_for_dead_worker(worker)
        await self._replace("crashed")

    def _account_for_dead_worker(self, worker: WorkerProcess) -> None:
        """Settle or requeue what the dead worker had: the tasks it began, up to the one it began
        last, ended with it (their results are lost with it: tiny tasks' results go back in
        batches); the others go back to the front of the backlog."""
        last = worker.last_began()
        ran = list(itertools.takewhile(lambda job_id: job_id != last, self._inflight))
        ran = [*ran, last] if last in self._inflight else []
        again: list[Job] = []
        for job_id in ran:
            job = self._take_out(job_id)
            if job_id in self._cancelling or job.settled:
                job.cancel_now()
                continue
            if job_id == last and self._crashed(worker, job):  # the one running when it died
                continue
            if job.retries > 0:
                job.retries -= 1  # the caller said it is safe to run again
                job.requeue()
                again.append(job)
            else:
                job.fail(worker.crash_error(job.description))
        if not ran and self._inflight:
            # It died before it began any of them: while it received the first, or waited for
            # it. That task may be the cause (an argument too large for the worker's memory), so
            # the death counts against it. Having never run, it goes back with the others,
            # retries or not, until its crashes reach `max_crashes_per_task`.
            head_id, head = next(iter(self._inflight.items()))
            if head_id not in self._cancelling and not head.settled and self._crashed(worker, head):
                self._take_out(head_id)
        self._give_back_unstarted(again)

    def _crashed(self, worker: WorkerProcess, job: Job) -> bool:
        """Count a crash against ``job``; True if that makes it a poison task, failed now."""
        job.crashes += 1
        if job.crashes < self._healing.max_crashes:
            return False
        job.fail(self._poison_error(worker, job))
        return True

    @staticmethod
    def _poison_error(worker: WorkerProcess, job: Job) -> PoisonTaskError:
        crash = worker.crash_error(job.description)
        return PoisonTaskError(
            pid=crash.pid,
            exitcode=crash.exitcode,
            signal_name=crash.signal_name,
            task=job.description,
            crashes=job.crashes,
        )

    def _give_back_unstarted(self, requeue: list[Job] | None = None) -> None:
        """The worker is gone: jobs it had not started go back to the front of the backlog,
        after ``requeue`` (the crashed job, when it is run again)."""
        requeue = requeue or []
        for job_id, job in self._inflight.items():
            if job_id in self._cancelling or job.settled:
                job.cancel_now()
            else:
                job.requeue()
                requeue.append(job)
        self._inflight.clear()
        self._cancelling.clear()
        self._dropped.clear()
        self._taking_back.clear()
        self._scheduler.put_front(requeue)

    async def _replace(self, reason: ExitReason) -> None:
        """Stop the worker (if still there) and start a replacement now, before it is needed.

        The old worker's exit and the new one's start overlap (often the new one is a warm
        spare); the new one takes tasks once the old one is gone."""
        old = self._detach()
        async with anyio.create_task_group() as task_group:
            if old is not None:
                task_group.start_soon(old.stop, self._kill_grace)
            # On failure a waiting task retries the start, and fails with its error (or the pool's).
            with contextlib.suppress(Exception):
                self._set_worker(await self._spawn(), ready=False)
        if old is not None:
            self._observer.worker_exited(old.pid, reason, old.exitcode)
        if self.worker is not None:
            self._became_idle()

    def _detach(self) -> WorkerProcess | None:
        self._scheduler.slot_unavailable(self)
        worker, self.worker = self.worker, None
        self._died = self._kill_head = False
        if worker is not None:
            worker.stop_reading()
            self._healing.live_workers -= 1
        return worker

    async def _retire(self, reason: ExitReason) -> None:
        worker = self._detach()
        if worker is not None:
            await worker.stop(self._kill_grace)
            self._observer.worker_exited(worker.pid, reason, worker.exitcode)

    async def _shut_down(self) -> None:
        """Normal end: stop the idle worker. Torn down mid-task: kill it and cancel what it had."""
        reason: ExitReason = "closed"
        self._scheduler.slot_unavailable(self)
        if self._inflight and self.worker is not None:
            self.worker.stop_reading()
            await self.worker.terminate(self._kill_grace)
            reason = "killed"
        for job in self._inflight.values():
            job.cancel_now()
        self._inflight.clear()
        self._dropped.clear()
        await self._retire(reason)


def _call_size(worker: WorkerProcess, job: Job) -> int:
    """The bytes a call carries to ``worker``, its out-of-band buffers too: a large one is never
    sent ahead of a running task (so a worker has a large call's buffers to map one at a time)."""
    size = worker.call_size(job.fn_id, job.fn_bytes, job.args_bytes)
    return size if job.buffers is None else size + job.buffers.size
