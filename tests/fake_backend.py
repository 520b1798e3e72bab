"""A fake `procpool._core.Backend` (no processes, no threads) and `FakePool`, the facade over it,
built as `procpool.Pool` and `procpool.testing.InlinePool` are: a `PoolFacade` with a backend.

By hand (the default), the backend keeps every job it is given and does nothing with it: the test
moves each job on (`FakeBackend.start`, `finish`, `fail`, `crash`, `kill`), as a worker and its
slot would. Automatic, it runs each job in turn in a task on the event loop, through
`procpool._child.run_pickled` as a worker does, so the verbs see a working pool (its calls block
the loop while they run: give it quick functions only). Deadlines are recorded, never enforced.
"""

from __future__ import annotations

import itertools
import pickle
from collections import deque
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from procpool import PoolClosedError, WorkerCrashedError
from procpool._api import PoolFacade, PoolOptions
from procpool._child import run_pickled
from procpool._core import Job, PoolState, Stage, leave_task_group
from procpool._transport import unpack_exception


class FakeBackend:
    """Implements `procpool._core.Backend`; every method runs on the event loop's thread."""

    admission = None
    kill_grace = 0.0
    workers_import_main = True
    memory_files = None
    loop = None

    def __init__(self, workers: int, *, automatic: bool) -> None:
        self.workers = workers
        self.automatic = automatic
        self.state = PoolState.NEW
        self.jobs: list[Job] = []  # every job submitted, in order: the test's handles on them
        self.deadlines: list[tuple[Job, float, float]] = []  # (job, deadline, timeout) from set_deadline
        self.taken_back: list[Job] = []  # jobs whose on_cancel was called, in order
        self._job_ids = itertools.count(1)
        self._outstanding: set[Job] = set()
        self._drained: anyio.Event | None = None  # close() waits on it for the last job to settle
        self._waiting: deque[Job] = deque()  # automatic: jobs for the serving task, in order
        self._wakeup = anyio.Event()
        self._task_group: TaskGroup | None = None

    # -- the Backend protocol ------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return sum(job.stage is Stage.QUEUED for job in self._outstanding)

    def new_job_id(self) -> int:
        return next(self._job_ids)

    def check_open(self) -> None:
        if self.state is not PoolState.OPEN:
            raise PoolClosedError("the FakePool is " + ("not started" if self.state is PoolState.NEW else "closed"))

    def submit(self, job: Job) -> None:
        if job.stream is not None:
            raise NotImplementedError("FakePool does not run pool.stream()")
        task = job.task
        assert task is not None
        job.on_cancel = self._take_back
        self.jobs.append(job)
        self._outstanding.add(job)
        task.add_done_callback(lambda _: self._settled(job))
        if self.automatic:
            self._waiting.append(job)
            self._wakeup.set()

    def set_deadline(self, job: Job, deadline: float, timeout: float) -> None:
        self.deadlines.append((job, deadline, timeout))

    async def open(self) -> None:
        if self.state is not PoolState.NEW:
            raise RuntimeError("a FakePool can be entered only once")
        if self.automatic:
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            self._task_group.start_soon(self._serve)
        self.state = PoolState.OPEN

    async def close(self) -> None:
        if self.state is PoolState.NEW:
            self.state = PoolState.CLOSED
            return
        if self.state is PoolState.OPEN:
            self.state = PoolState.CLOSING
        self._wakeup.set()  # the serving task ends once it has run what waits
        while self._outstanding:
            self._drained = anyio.Event()
            await self._drained.wait()

    async def exit(self, *, abort: bool) -> None:
        task_group, self._task_group = self._task_group, None
        if abort:
            self.state = PoolState.CLOSING
        try:
            await leave_task_group(task_group, cancelling=self._outstanding if abort else None)
        finally:
            # Running jobs whose cancel asked for a kill: their (imaginary) workers are gone now.
            for job in list(self._outstanding):
                job.cancel_now()
            self.state = PoolState.CLOSED

    # -- what a worker and its slot would do, by hand -------------------------------------------

    def start(self, job: Job) -> None:
        """Send ``job`` to a worker, which begins it: the handle becomes running."""
        assert job.take(), f"{job} cannot be sent"
        job.began()

    def finish(self, job: Job, value: Any) -> None:
        """The worker returned ``value``: its pickle reaches the job, to be unpickled there."""
        job.succeed(pickle.dumps(value))

    def fail(self, job: Job, exception: BaseException) -> None:
        job.fail(exception)

    def crash(self, job: Job) -> None:
        """The worker running ``job`` died: run it again if it has retries left, as the engine does."""
        job.crashes += 1
        if job.retries > 0:
            job.retries -= 1
            job.requeue()
        else:
            job.fail(WorkerCrashedError(pid=None, exitcode=-9, signal_name="SIGKILL", task=job.description))

    def kill(self, job: Job) -> None:
        """The worker of ``job``, whose cancel asked for a kill, is gone: it ends cancelled."""
        assert job in self.taken_back
        assert job.stage is Stage.RUNNING
        job.cancel_now()

    # -- inside --------------------------------------------------------------------------------

    def _take_back(self, job: Job) -> None:
        self.taken_back.append(job)
        if job in self._waiting:
            self._waiting.remove(job)

    def _settled(self, job: Job) -> None:
        self._outstanding.discard(job)
        if not self._outstanding and self._drained is not None:
            self._drained.set()

    async def _serve(self) -> None:
        while self._waiting or self.state is PoolState.OPEN:
            if not self._waiting:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                continue
            job = self._waiting.popleft()
            fn_bytes, args_bytes = job.fn_bytes, job.args_bytes
            if job.take():
                job.began()
                succeeded, body = run_pickled(fn_bytes, args_bytes)
                if succeeded:
                    job.succeed(body)
                else:
                    job.fail(unpack_exception(body))
            await anyio.lowlevel.checkpoint()  # one call per turn, as a worker's round trip would be


class FakePool(PoolFacade):
    """A pool over a `FakeBackend`; ``pool.backend`` is its backend, for the test to drive."""

    _backend: FakeBackend

    def __init__(self, workers: int = 2, *, automatic: bool = False, kill_on_cancel: bool = True) -> None:
        self._kill_on_cancel = kill_on_cancel
        self._backend = FakeBackend(workers, automatic=automatic)

    @property
    def backend(self) -> FakeBackend:
        return self._backend

    @property
    def workers(self) -> int:
        return self._backend.workers

    def options(
        self, *, kill_on_cancel: bool | None = None, timeout: float | None = None, retries: int = 0
    ) -> PoolOptions:
        return PoolOptions(
            self._backend,
            kill_on_cancel=self._kill_on_cancel if kill_on_cancel is None else kill_on_cancel,
            timeout=timeout,
            retries=retries,
        )
