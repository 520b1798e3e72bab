"""One worker slot: feeds its worker process from the pool's backlog and settles its tasks.

Each slot owns at most one worker process at a time and is the only reader and writer of its
channel, so every frame reaches the task it names and a dead worker fails only the task it was
running. Scheduling is pull-based: an idle slot waits on the backlog; a busy one tops its worker
up without waiting. To keep a worker busy through the round trip, a slot sends tasks ahead of the
one running, as many as take about `_PREFETCH_BUDGET` seconds by the recent average (at least
one for tasks under `_SHORT_TASK`): dozens of tiny tasks, but none behind a long task and no
large call (`_LARGE_CALL`), so an idle worker never waits for long while another has work queued.
Sending never waits: what the channel cannot take goes out while the slot waits to read (see
`WorkerProcess.send`), so the slot keeps reading, and a cancel reaches it wherever it waits.
A task sent ahead but not started is skipped if cancelled (CANCEL), and goes back to the front of
the backlog if its worker dies.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from .._core import Backlog, BacklogClosed, ExitReason, Job, PoolObserver, Stage, TaskStarted, WorkerStarted
from .._errors import InitializerError, PoisonTaskError, WorkerCrashedError
from .._transport import unpack_exception, wire
from . import _reports
from ._healing import Healing
from ._process import WorkerProcess

_PREFETCH_BUDGET = 0.0005  # seconds of work to keep queued in a worker: about a round trip
_MAX_AHEAD = 64
_SHORT_TASK = 0.05  # seconds: shorter tasks always get one more sent ahead
_LARGE_CALL = 64 * 1024  # bytes: a call this large is sent only to an idle worker, never ahead
_SMOOTHING = 0.2  # weight of the newest sample in the average task time
_MEMORY_CHECK_INTERVAL = 0.05  # seconds: a worker's memory is read at most this often, after a task


class WorkerSlot:
    def __init__(
        self,
        spawn: Callable[[], Awaitable[WorkerProcess]],
        backlog: Backlog,
        *,
        max_tasks_per_worker: int | None,
        kill_grace: float,
        healing: Healing,
        observer: PoolObserver,
    ) -> None:
        self._spawn = spawn
        self._healing = healing
        self._observer = observer
        self._retiring = False  # the worker takes no more tasks and is replaced once it has none
        self._memory_checked = 0.0
        self._backlog = backlog
        self._max_tasks = max_tasks_per_worker
        self._kill_grace = kill_grace
        self.worker: WorkerProcess | None = None
        self._inflight: OrderedDict[int, Job] = OrderedDict()  # sent to the worker, in order
        self._cancels: list[Job] = []
        self._cancelling: set[int] = set()  # told to skip; a result that comes anyway is dropped
        self._dropped: set[int] = set()  # cancelled while sent: no longer waiting to start
        self._wait: anyio.CancelScope | None = None
        self._watchers: TaskGroup | None = None  # where each worker's `WorkerProcess.watch` runs
        self._task_time: float | None = None
        self._head_since = 0.0

    @property
    def waiting(self) -> int:
        """Tasks sent to the worker behind the one it runs, less those cancelled there."""
        if not self._inflight:
            return 0
        dropped = len(self._dropped)
        if dropped and next(iter(self._inflight)) in self._dropped:
            dropped -= 1
        return len(self._inflight) - 1 - dropped

    @property
    def busy(self) -> bool:
        return bool(self._inflight)

    @property
    def alive(self) -> bool:
        return self.worker is not None and not self.worker.has_exited()

    async def run(self, worker: WorkerProcess | None) -> None:
        """Serve tasks until the backlog is closed and drained; then stop the worker."""
        async with anyio.create_task_group() as self._watchers:
            if worker is not None:
                self._set_worker(worker)
            try:
                await self._serve()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._shut_down()
                self._watchers.cancel_scope.cancel()  # their workers are gone: nothing to watch

    async def _serve(self) -> None:
        while True:
            if not self._inflight:
                try:
                    job = await self._next_job()
                except BacklogClosed:
                    return
                if job is None:
                    continue  # idle too long: the worker was let go
                if await self._ready_worker(job):
                    await self._send([job, *self._jobs_ahead(job, 1)])
                del job  # settled jobs hold nothing, but nothing here needs it any longer
            if self._inflight:
                await self._serve_once()

    async def _next_job(self) -> Job | None:
        """The next task for an idle worker; None if it idled for ``idle_timeout`` and was stopped."""
        idle_timeout = self._healing.idle_timeout
        if idle_timeout is None or self.worker is None:
            return await self._backlog.get()
        with anyio.move_on_after(idle_timeout):
            return await self._backlog.get()
        healing = self._healing
        if healing.live_workers > healing.min_workers:
            await self._retire("idle")
            await healing.drop_spare(self._kill_grace)
        return None

    # -- sending ---------------------------------------------------------------------------------

    async def _ready_worker(self, job: Job) -> bool:
        """Make sure a live worker is there for ``job``; if none can be started, fail the job."""
        if self.worker is not None and not self.worker.has_exited():
            return True
        await self._retire("crashed")  # it died between tasks
        if self._healing.broken is not None:
            job.fail(self._healing.broken_error())
            return False
        try:
            self._set_worker(await self._healing.restart())
        except InitializerError:
            job.fail(self._healing.broken_error())
            return False
        except WorkerCrashedError as exc:
            if job.retries > 0 and not job.settled:  # killed during its start-up: the job never ran, try again
                job.retries -= 1
                self._backlog.put_front([job])
            else:
                job.fail(exc)
            return False
        except Exception as exc:
            job.fail(exc)
            return False
        return True

    def _set_worker(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self._retiring = False
        self._healing.live_workers += 1
        assert self._watchers is not None
        self._watchers.start_soon(worker.watch)  # its death ends a wait for its frames
        self._observer.emit(WorkerStarted(worker.pid))

    async def _send(self, jobs: list[Job]) -> None:
        worker = self.worker
        assert worker is not None
        frames: list[bytes] = []
        head = None if self._inflight else jobs[0]
        streams: list[Job] = []
        for job in jobs:
            if not job.take():
                if job is head:
                    head = None
                continue  # cancelled meanwhile
            if not self._inflight:
                self._head_since = time.monotonic()
            job.on_cancel = self._request_cancel
            self._inflight[job.id] = job
            worker.dispatched += 1
            kind = wire.CALL if job.stream is None else wire.STREAM
            frames += worker.encode_call(kind, job.id, job.fn_id, job.fn_bytes, job.args_bytes)
            if job.stream is not None:
                streams.append(job)
        if frames:
            worker.send(frames)  # does not wait: what the channel cannot take goes out as we read
        if head is not None:
            self._began(head)
        for job in streams:
            assert job.stream is not None
            await job.stream.attach(job.id, functools.partial(self._send_for_stream, worker))

    async def _send_for_stream(self, worker: WorkerProcess, frames: list[bytes]) -> None:
        """Send a stream's CREDIT or CLOSE from its consumer. Should the channel not take it at
        once, wake this slot from its wait to read, so that it waits to write as well."""
        worker.send(frames)
        if worker.sending and self._wait is not None:
            self._wait.cancel()

    def _began(self, job: Job) -> None:
        """``job`` is now first in its worker's queue: the worker runs it (it reads and begins
        tasks in order), so its handle becomes running. A job cancelled while it was sent ahead
        has settled: the worker skips it, or its result is dropped."""
        if not job.began():
            return  # settled (or vetoed by its start gate), or marked already
        if self._observer.on_event is not None and job.task is not None and self.worker is not None:
            self._observer.emit(TaskStarted(job.task, self.worker.pid))

    async def _top_up(self) -> None:
        """Send more tasks ahead of the running one, up to what the recent task time calls for."""
        if self._inflight:
            batch = self._jobs_ahead(next(iter(self._inflight.values())), len(self._inflight))
            if batch:
                await self._send(batch)

    def _jobs_ahead(self, head: Job, in_flight: int) -> list[Job]:
        """Jobs to send behind ``head`` when ``in_flight`` are already on their way."""
        worker = self.worker
        if worker is None or head.stream is not None or self._task_time is None or self._retiring:
            return []
        limit = min(1 + int(_PREFETCH_BUDGET / max(self._task_time, 1e-7)), _MAX_AHEAD)
        if self._task_time < _SHORT_TASK:
            limit = max(limit, 2)  # one task ahead hides the round trip at little risk of imbalance
        if in_flight > limit // 2:
            return []  # top up in batches: one write (and one wake-up of the worker) for several
        room = min(limit - in_flight, self._backlog.spare)
        if self._max_tasks is not None:
            room = min(room, self._max_tasks - worker.dispatched - in_flight)
        batch: list[Job] = []
        while len(batch) < room and (job := self._backlog.peek()) is not None and self._fits_ahead(worker, job):
            self._backlog.get_nowait()
            batch.append(job)
        return batch

    @staticmethod
    def _fits_ahead(worker: WorkerProcess, job: Job) -> bool:
        """Whether ``job`` may wait in a busy worker's channel: not a stream (its items need the
        worker to itself), and not a large call, which would wait there for as long as the task
        ahead runs, while an idle worker could have it at once."""
        return job.stream is None and worker.call_size(job.fn_id, job.fn_bytes, job.args_bytes) <= _LARGE_CALL

    # -- receiving -------------------------------------------------------------------------------

    async def _serve_once(self) -> None:
        # A cancel that came while this slot was not waiting (it was sending) has not
        # interrupted anything: act on it before waiting, or a running task it must kill would
        # run to its end first.
        if self._cancels and await self._handle_cancels():
            return
        worker = self.worker
        assert worker is not None
        died = False
        with anyio.CancelScope() as self._wait:  # Task.cancel() interrupts the wait
            frame = await worker.receive()
            if frame is None:
                died = True
            else:
                self._settle(worker, frame)
                while (frame := worker.receive_buffered()) is not None:
                    self._settle(worker, frame)
        self._wait = None
        if died:
            await self._worker_died()
            return
        if await self._handle_cancels():
            return
        if self._max_tasks is not None and worker.tasks_run >= self._max_tasks:
            self._retiring = True  # recycle: it has run its share
        elif self._healing.max_memory is not None:
            self._check_memory(worker)
        if self._retiring:
            if not self._inflight:
                await self._replace("recycled")
            return
        await self._top_up()

    def _check_memory(self, worker: WorkerProcess) -> None:
        """Retire the worker once its resident memory is over ``max_memory_per_worker``; read from
        ``/proc`` at most every `_MEMORY_CHECK_INTERVAL`, so tiny tasks do not pay for it."""
        now = time.perf_counter()
        if now - self._memory_checked >= _MEMORY_CHECK_INTERVAL:
            self._memory_checked = now
            if self._healing.over_memory(worker):
                self._retiring = True

    def _settle(self, worker: WorkerProcess, frame: wire.Frame) -> None:
        job = self._inflight.get(frame.task_id)
        if frame.kind in wire.REPORTS:
            _reports.deliver(worker.pid, frame, job)
            return
        if job is None:
            return  # a late frame of a job already settled
        if frame.kind == wire.ITEM:
            if job.stream is not None:
                job.stream.deliver(frame.body)
            return
        self._take_out(frame.task_id)
        if frame.kind == wire.CANCELLED or frame.task_id in self._cancelling:
            self._cancelling.discard(frame.task_id)
            job.cancel_now()
        else:
            worker.tasks_run += 1
            now = time.monotonic()
            sample, self._head_since = now - self._head_since, now
            self._task_time = (
                sample if self._task_time is None else self._task_time + _SMOOTHING * (sample - self._task_time)
            )
            job.started_at, job.finished_at = wire.TIMING.unpack_from(frame.body)
            job.received_at = now
            if job.stage is Stage.SENT:  # not marked yet: its result came in one read with the one before
                self._began(job)
            body = memoryview(frame.body)[wire.TIMING.size :]
            if frame.kind == wire.RESULT:
                job.succeed(body)
            else:
                job.fail(unpack_exception(body))
        if self._inflight and (head := next(iter(self._inflight.values()))).stage is Stage.SENT:
            self._began(head)

    # -- cancellation, crashes, replacement ---------------------------------------------------

    def _take_out(self, job_id: int) -> Job:
        """Take a job out of the worker's queue: its outcome came, or the worker is gone."""
        self._dropped.discard(job_id)
        return self._inflight.pop(job_id)

    def _cancels_are_final(self) -> None:
        """The worker is gone: a cancel not yet acted on means its job never runs again."""
        self._cancelling.update(job.id for job in self._cancels)
        self._cancels.clear()

    def _request_cancel(self, job: Job) -> None:
        """Called by `Job.cancel` on a job this slot has sent to its worker."""
        if job.id in self._inflight:
            self._dropped.add(job.id)
        self._cancels.append(job)
        if self._wait is not None:
            self._wait.cancel()

    async def _handle_cancels(self) -> bool:
        """Act on cancellations; True if the worker was killed (and replaced)."""
        cancels, self._cancels = self._cancels, []
        skip: list[bytes] = []
        for job in cancels:
            if job.id in self._inflight and job.id not in self._cancelling:
                self._cancelling.add(job.id)
                skip += wire.encode(wire.CANCEL, job.id)
        if skip and self.worker is not None:
            self.worker.send(skip)
        if not self._inflight:
            return False
        head_id, head = next(iter(self._inflight.items()))
        # The head is running (or about to): skipping is no longer possible, killing is. A head
        # cancelled while it was sent ahead has settled already: its worker skips it, unless it
        # had begun it before the CANCEL came (then it is killed as a running task would be).
        began = not head.settled or (self.worker is not None and self.worker.last_began() == head_id)
        if head_id in self._cancelling and head.kill_on_cancel and began:
            await self._kill(head)
            return True
        return False

    async def _kill(self, head: Job) -> None:
        worker = self.worker
        assert worker is not None
        await worker.terminate(self._kill_grace)
        self._take_out(head.id)
        head.cancel_now()
        self._give_back_unstarted()
        await self._replace("killed")

    async def _worker_died(self) -> None:
        """The worker's channel is at its end: the worker died, or closed it and is dying."""
        worker = self.worker
        assert worker is not None
        # One that closed its channel and lives on is killed after the grace. A cancel ends the
        # wait at once: nothing more can come from the worker, so the canceller does not wait.
        with anyio.CancelScope() as self._wait:
            await worker.wait_exit(self._kill_grace)
        self._wait = None
        if worker.exitcode is None:
            await worker.terminate(self._kill_grace)
        self._cancels_are_final()
        # The tasks it began, up to the one it began last, ended with it (their results are lost
        # with it; tiny tasks' results go back in batches).
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
        await self._replace("crashed")

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
        self._cancels_are_final()
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
        self._backlog.put_front(requeue)

    async def _replace(self, reason: ExitReason) -> None:
        """Stop the worker (if still there) and start a replacement now, before it is needed.

        The old worker's exit and the new one's start overlap (often the new one is a warm spare)."""
        self._task_time = None
        old = self._detach()
        async with anyio.create_task_group() as task_group:
            if old is not None:
                task_group.start_soon(old.stop, self._kill_grace)
            # On failure the next task retries the start, and fails with its error (or the pool's).
            with contextlib.suppress(Exception):
                self._set_worker(await self._spawn())
        if old is not None:
            self._observer.worker_exited(old.pid, reason, old.exitcode)

    def _detach(self) -> WorkerProcess | None:
        worker, self.worker = self.worker, None
        if worker is not None:
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
        if self._inflight and self.worker is not None:
            await self.worker.terminate(self._kill_grace)
            reason = "killed"
        for job in self._inflight.values():
            job.cancel_now()
        self._inflight.clear()
        self._dropped.clear()
        await self._retire(reason)
