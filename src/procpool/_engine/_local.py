"""`LocalBackend`: the local engine behind `procpool.Pool`: worker processes on this machine, one
slot each, fed from one backlog.

It starts the workers, owns the task group its slots and helpers run in, admits jobs
(``max_queued``), keeps their deadlines, and counts what happens for ``stats()``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from .._core import (
    Admission,
    Backlog,
    Deadlines,
    Job,
    Outstanding,
    PoolObserver,
    PoolState,
    PoolStats,
    leave_task_group,
    loop_check,
    used_from_another_thread,
)
from .._errors import PoolClosedError
from .._launch import worker_context
from .._sizing import available_cpus
from .._transport import MemoryFiles, dumps_for_transport
from ._channel_io import ChannelIO, channel_io
from ._healing import Healing
from ._policy import SchedulingPolicy
from ._process import WorkerProcess, start_failed
from ._reports import logging_levels
from ._scheduler import Scheduler
from ._slot import WorkerSlot

_FUNCTION_IDS = 1024
# Frames (results, logs, printed text) the pool settles per event loop turn: each result wakes
# a coroutine, which runs on the next turn, so this bounds how long a timer waits behind them.
_FRAMES_PER_TURN = 32
_OPEN = PoolState.OPEN  # a global, for the check each call makes: an enum member's lookup is slow (see `_core._job`)


class _FunctionIds:
    """Content-addressed ids for pickled functions.

    Equal pickles share an id, so a worker that already loaded a function is sent only its id,
    while a function that changed (a closure over new values) gets a new id and is sent again.
    """

    def __init__(self) -> None:
        self._ids: OrderedDict[bytes, int] = OrderedDict()
        self._counter = itertools.count(1)
        # The pickle asked about last, which is most recently used already: calls of one function
        # in a row (tiny tasks) pass the very same bytes, and need no lookup.
        self._last: tuple[bytes, int] = (b"", 0)

    def id_for(self, fn_bytes: bytes) -> int:
        last_bytes, last_id = self._last
        if fn_bytes is last_bytes:
            return last_id
        fn_id = self._ids.get(fn_bytes)
        if fn_id is None:
            fn_id = self._ids[fn_bytes] = next(self._counter)
            if len(self._ids) > _FUNCTION_IDS:
                self._ids.popitem(last=False)
        else:
            self._ids.move_to_end(fn_bytes)
        self._last = (fn_bytes, fn_id)
        return fn_id


class LocalBackend:
    """Worker processes on this machine (see `procpool.Pool` for the options)."""

    workers_import_main = True  # multiprocessing's start has each child import the main script

    def __init__(
        self,
        workers: int,
        *,
        start_method: str,
        initializer: Callable[..., object] | None,
        initargs: Iterable[Any],
        max_tasks_per_worker: int | None,
        kill_grace: float,
        forward_logs: bool,
        forward_output: bool,
        observer: PoolObserver,
        max_queued: int | None,
        max_memory_per_worker: int | None,
        max_crashes_per_task: int,
        idle_timeout: float | None,
        min_workers: int,
        buffer_threshold: int | None,
    ) -> None:
        self.workers = workers
        # A memory file for each worker's call waits to be reused, at most.
        cpus = available_cpus()
        self.memory_files = None if buffer_threshold is None else MemoryFiles(buffer_threshold, keep=workers, cpus=cpus)
        # Idle workers may poll for their next call (see `procpool._child`'s `_Inbox.wait`) only
        # where none takes a CPU that the parent or another worker needs.
        self._workers_may_poll = workers <= cpus
        self.start_method = start_method
        self.kill_grace = kill_grace
        self.observer = observer
        self.state = PoolState.NEW
        self.admission: Admission | None = None
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._max_tasks_per_worker = max_tasks_per_worker
        self._forward_logs = forward_logs
        self._forward_output = forward_output
        self._max_queued = max_queued
        self._max_memory_per_worker = max_memory_per_worker
        self._max_crashes_per_task = max_crashes_per_task
        self._idle_timeout = idle_timeout
        self._min_workers = min_workers
        self.thread: int | None = None
        self.token: anyio.lowlevel.EventLoopToken | None = None
        # Set in `open`, in the pool's loop: which loop library runs is known only there.
        self._in_own_loop: Callable[[], bool] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # asyncio's loop that opened the pool
        self._job_ids = itertools.count(1)
        self._function_ids = _FunctionIds()
        self._outstanding = Outstanding(observer)
        self._backlog: Backlog | None = None
        self._scheduler: Scheduler | None = None
        self._slots: list[WorkerSlot] = []
        self._workers: weakref.WeakSet[WorkerProcess] = weakref.WeakSet()  # every one it started
        self._task_group: TaskGroup | None = None
        self._slots_running = 0
        self._stopped: anyio.Event | None = None
        self._deadlines: Deadlines | None = None
        self._healing: Healing | None = None
        self._io: ChannelIO | None = None  # how the workers' channels are watched, while open

    # -- what the verbs use ---------------------------------------------------------------------

    @property
    def queued(self) -> int:
        backlog = 0 if self._backlog is None else len(self._backlog)
        return backlog + sum(slot.waiting for slot in self._slots)

    def new_job_id(self) -> int:
        return next(self._job_ids)

    def check_open(self) -> None:
        if self.state is not _OPEN:
            if self.state is PoolState.NEW:
                raise PoolClosedError(
                    "the pool is not started: use it as `async with procpool.Pool() as pool:`, "
                    "or open it with `pool = await procpool.Pool().open()`"
                )
            raise PoolClosedError(
                "the pool is closed: submit work before leaving `async with` or `await pool.aclose()`"
            )
        if self._healing is not None and self._healing.broken is not None:
            raise self._healing.broken_error()
        if threading.get_ident() != self.thread:
            raise used_from_another_thread("a Pool", has_executor=True)
        assert self._in_own_loop is not None  # set when the pool opened
        try:
            same_loop = self._in_own_loop()
        except RuntimeError:  # no event loop runs here at all
            same_loop = False
        if not same_loop:
            raise RuntimeError(
                "this Pool belongs to another event loop (the one it was opened in, in the process that opened "
                "it); a pool cannot be shared between event loops, nor with a forked process: open one pool per "
                "loop (with pytest-asyncio, give the pool the loop's scope)"
            )

    def submit(self, job: Job) -> None:
        assert self._scheduler is not None
        task = job.task
        assert task is not None
        job.fn_id = self._function_ids.id_for(job.fn_bytes)
        task._loop = self.loop  # where its waiters wait: `check_open` made sure this one runs
        self._outstanding.add(job)
        if self.admission is not None:
            task.add_done_callback(self.admission.notify)  # a task sent ahead leaves `queued` as it ends
        self._scheduler.submit(job)

    def set_deadline(self, job: Job, deadline: float, timeout: float) -> None:
        assert self._deadlines is not None
        self._deadlines.add(job, deadline, timeout)

    def stats(self) -> PoolStats:
        slots = list(self._slots)
        return self.observer.stats(
            workers=self.workers,
            alive=sum(slot.alive for slot in slots),
            busy=sum(slot.busy for slot in slots),
            queued=self.queued,
        )

    def open_since_loop_closed(self) -> bool:
        """Whether the pool is open but the event loop it was opened in has been closed."""
        native = getattr(self.token, "native_token", None)
        is_closed = getattr(native, "is_closed", None)
        return self.state is PoolState.OPEN and callable(is_closed) and bool(is_closed())

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self.state is not PoolState.NEW:
            raise RuntimeError("a Pool opens only once (with `async with` or `await pool.open()`); create a new Pool")
        in_own_loop, loop = loop_check()  # raises where no pool can run, before anything starts
        self.state = PoolState.CLOSING  # not open for tasks until the workers are ready
        self.thread = threading.get_ident()
        self.token = anyio.lowlevel.current_token()
        self._in_own_loop, self.loop = in_own_loop, loop
        context = worker_context(self.start_method)
        log_levels = logging_levels() if self._forward_logs else None
        setup = dumps_for_transport(
            (
                self._initializer,
                self._initargs,
                log_levels,
                self._forward_output,
                self.kill_grace,
                None if self.memory_files is None else self.memory_files.threshold,
                self._workers_may_poll,
            ),
            "the initializer or its arguments",
        )
        spawn = functools.partial(WorkerProcess.spawn, context, setup, self._workers)
        task_group = anyio.create_task_group()
        try:
            io = channel_io(task_group, _FRAMES_PER_TURN)  # a descriptor, as a worker takes
        except OSError as exc:  # none to spare: the error a worker's start gives
            self.state = PoolState.CLOSED
            raise start_failed(exc) from exc
        try:
            workers = await self._spawn_all(spawn)
        except BaseException:
            io.close()
            self.state = PoolState.CLOSED
            raise
        self._io = io
        self._stopped = anyio.Event()
        self._task_group = task_group
        await task_group.__aenter__()
        if self._max_queued is not None:
            self.admission = Admission(self._max_queued, lambda: self.queued)
        self._backlog = Backlog(on_take=None if self.admission is None else self.admission.notify)
        self._scheduler = scheduler = Scheduler(self._backlog, SchedulingPolicy())
        self._deadlines = Deadlines(task_group.start_soon)
        self._healing = healing = Healing(
            spawn,
            task_group.start_soon,
            max_memory_per_worker=self._max_memory_per_worker,
            max_crashes_per_task=self._max_crashes_per_task,
            idle_timeout=self._idle_timeout,
            min_workers=self._min_workers,
            on_broken=self._on_broken,
        )
        for worker in workers:
            slot = WorkerSlot(
                healing.spawn,
                scheduler,
                io,
                max_tasks_per_worker=self._max_tasks_per_worker,
                kill_grace=self.kill_grace,
                observer=self.observer,
                healing=healing,
            )
            self._slots.append(slot)
            scheduler.add(slot)
            self._slots_running += 1
            task_group.start_soon(self._run_slot, slot, worker)
        task_group.start_soon(scheduler.rebalance)
        self.state = PoolState.OPEN

    async def _spawn_all(self, spawn: Callable[[], Coroutine[Any, Any, WorkerProcess]]) -> list[WorkerProcess]:
        """Start every worker in parallel; if any fails, stop the others and raise its error."""
        workers: list[WorkerProcess] = []
        errors: list[Exception] = []

        async def spawn_one() -> None:
            try:
                workers.append(await spawn())
            except Exception as exc:
                errors.append(exc)

        try:
            async with anyio.create_task_group() as task_group:
                for _ in range(self.workers):
                    task_group.start_soon(spawn_one)
            if errors:
                raise errors[0]
        except BaseException:
            with anyio.CancelScope(shield=True):
                for worker in workers:
                    await worker.stop(0)
            raise
        return workers

    async def _run_slot(self, slot: WorkerSlot, worker: WorkerProcess) -> None:
        try:
            await slot.run(worker)
        finally:
            self._slots_running -= 1
            if self._slots_running == 0:
                await self._after_last_slot()

    async def _after_last_slot(self) -> None:
        """Every slot has stopped: end the helpers that outlive no slot, then tell `close`."""
        if self._deadlines is not None:
            self._deadlines.stop()
        if self._healing is not None:
            with anyio.CancelScope(shield=True):
                await self._healing.close(self.kill_grace)
        if self.memory_files is not None:
            self.memory_files.close()  # every job has settled
        if self._io is not None:
            self._io.close()  # no channel is left to watch
        if self._stopped is not None:
            self._stopped.set()

    async def close(self) -> None:
        if self.state is PoolState.NEW:
            self.state = PoolState.CLOSED
            return
        self._stop_accepting()
        if self._stopped is not None:
            await self._stopped.wait()

    async def exit(self, *, abort: bool) -> None:
        """Leave the task group entered by `open` (in the task that opened it); with ``abort``,
        cancel every job first, killing running ones whatever their options."""
        task_group, self._task_group = self._task_group, None
        try:
            await leave_task_group(task_group, cancelling=self._stop_everything() if abort else None)
        finally:
            self.state = PoolState.CLOSED

    def _stop_everything(self) -> list[Job]:
        """Stop accepting jobs; the outstanding ones, returned, are to be cancelled, killing
        running ones whatever their options."""
        self._stop_accepting()
        jobs = self._outstanding.jobs()
        for job in jobs:
            job.kill_on_cancel = True
        return jobs

    def abandoned(self) -> None:
        """The `Pool` in front of this backend was garbage-collected (a `weakref.finalize`): if it
        was never closed, nothing can close it now. Say so, as asyncio does of an unclosed
        transport, and end it: if its event loop may run again, cancel everything there, as an
        exit from ``async with`` by an exception would; if the loop has ended, kill the workers
        and close their descriptors now (else they would run on, tasks and all, until the
        interpreter exits). Called from any thread, at any point: it only schedules or kills."""
        if self.state in (PoolState.NEW, PoolState.CLOSED) or (self._stopped is not None and self._stopped.is_set()):
            return  # closed, or its slots all ended (asyncio.run cancels the tasks it leaves)
        try:
            warnings.warn(
                f"procpool.Pool(workers={self.workers}) was never closed: it was garbage-collected without "
                "leaving its `async with` block or awaiting `pool.aclose()`; its tasks are cancelled and its "
                "workers stopped",
                ResourceWarning,
                stacklevel=1,  # the finalizer's caller is whatever collected the garbage
            )
        finally:  # the warning raises where warnings are errors: the pool must end all the same
            self._end_abandoned()

    def _end_abandoned(self) -> None:
        """Cancel everything in the pool's event loop, or kill the workers if that loop has ended."""
        native = getattr(self.token, "native_token", None)
        run_soon = getattr(native, "run_sync_soon", None) or getattr(native, "call_soon_threadsafe", None)
        assert run_soon is not None  # open set the token
        try:
            run_soon(self._abort)
        except RuntimeError:  # the loop is closed (trio: its run finished)
            for worker in list(self._workers):
                worker.abandon()
            if self._io is not None:
                self._io.abandon()

    def _abort(self) -> None:
        """In the event loop of a pool that nobody can close any more: cancel every job, and the
        slots stop their workers as on a close. (Not the task group: the task that entered it
        may run on, and would be cancelled with it.)"""
        for job in self._stop_everything():
            job.cancel()

    def _stop_accepting(self) -> None:
        if self.state is PoolState.OPEN:
            self.state = PoolState.CLOSING
        if self._scheduler is not None:
            self._scheduler.close()
        if self.admission is not None:
            self.admission.close()

    def _on_broken(self) -> None:
        """The initializer raised in a replacement worker: fail what waits, and every new call."""
        healing = self._healing
        assert healing is not None
        assert self._backlog is not None
        while (job := self._backlog.get_nowait()) is not None:
            job.fail(healing.broken_error())
        if self.admission is not None:
            self.admission.close()  # callers waiting for room fail on `check_open`
