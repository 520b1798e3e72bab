"""`Backend`: what the verbs (``run``, ``submit``, ``map``, ``stream``, the executor view) need from
whatever runs the calls: the local engine (`procpool.Pool`), a Dask cluster (`procpool.DaskPool`),
this process (`procpool.testing.InlinePool`), or a fake in the tests.

The verbs make a `Job` per call and hand it over with `submit`; from then on the backend alone
moves the job on (`Job.take`, `began`, `succeed`, `fail`, `cancel_now`) until it settles.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .._transport import MemoryFiles
    from ._admission import Admission
    from ._job import Job
    from ._observe import PoolObserver
    from ._task import Task


class PoolState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Backend(Protocol):
    """Runs jobs. Every method is called from the event loop's thread that opened it."""

    @property
    def workers(self) -> int:
        """How many calls it runs at once (the default backpressure of ``map``)."""

    @property
    def state(self) -> PoolState: ...

    @property
    def admission(self) -> Admission | None:
        """The ``max_queued`` limit, if the backend has one."""

    @property
    def workers_import_main(self) -> bool:
        """Whether its workers import the main script, as multiprocessing's children do: then the
        script's top-level functions and classes travel by name, otherwise by value."""

    @property
    def memory_files(self) -> MemoryFiles | None:
        """Where arguments' large pickle buffers go, out of band: shared memory files, for those of
        at least its ``threshold`` bytes (see `procpool._transport.MemoryFiles`); None: every
        argument goes in the pickle."""

    @property
    def kill_grace(self) -> float:
        """Seconds a worker gets to stop before it is killed (a stream closed early waits this long)."""

    @property
    def queued(self) -> int:
        """How many submitted jobs wait to start."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """asyncio's event loop that `check_open` makes sure calls come from, once open; None if
        it checks no loop (or runs on trio)."""

    def new_job_id(self) -> int:
        """An id for the next job, unique in this backend."""

    def check_open(self) -> None:
        """Raise unless jobs can be submitted now, from here.

        Raises:
            PoolClosedError: not opened yet, or closed.
            RuntimeError: called from another thread or event loop than the backend's own.
        """

    def submit(self, job: Job) -> None:
        """Take ``job`` (QUEUED) and run it; the backend settles it in the end, whatever happens
        (it may do so before returning). A deadline for it, if any, is set before."""

    def set_deadline(self, job: Job, deadline: float, timeout: float) -> None:
        """Expire ``job`` (`Job.expire`) if it has not settled at ``deadline`` (``anyio.current_time()``)."""

    async def open(self) -> None:
        """Start: workers ready (or the cluster connected) when it returns."""

    async def close(self) -> None:
        """Refuse new jobs, wait for the submitted ones, stop. Safe to call more than once, from any task."""

    async def exit(self, *, abort: bool) -> None:
        """The end of ``async with``, in the task that opened it: with ``abort``, cancel every job
        (killing running ones) first; then end the backend's background tasks."""


class Outstanding:
    """The jobs a backend that runs its own calls has taken and whose handles are not done yet
    (the local engine's, `InlinePool`'s): each is counted into the pool's observer (``stats()``,
    `TaskEnded`) as it ends."""

    def __init__(self, observer: PoolObserver) -> None:
        self._jobs: dict[int, Job] = {}  # by id: a job's handle has it
        self._observer = observer
        self._task_done = self._done  # every handle gets it: bound once, not per job

    def add(self, job: Job) -> None:
        task = job.task
        assert task is not None
        self._jobs[job.id] = job
        task._on_done = self._task_done

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def _done(self, task: Task[Any]) -> None:
        del self._jobs[task.id]
        self._observer.task_done(task)


async def leave_task_group(task_group: TaskGroup | None, *, cancelling: Iterable[Job] | None) -> None:
    """End the task group a backend entered in ``open`` (from the task that opened it). Given jobs
    to cancel (``exit(abort=True)``), cancel them and the group's own tasks first."""
    if cancelling is not None:
        for job in list(cancelling):
            job.cancel()
        if task_group is not None:
            task_group.cancel_scope.cancel()
    if task_group is not None:
        await task_group.__aexit__(None, None, None)


def in_trio() -> bool:
    """Whether trio runs in this thread (without importing trio when it is not loaded)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class _Forks:
    """Forks this process has come from since procpool was imported (see `loop_check`)."""

    count = 0


def _count_fork() -> None:
    _Forks.count += 1


os.register_at_fork(after_in_child=_count_fork)


def loop_check() -> tuple[Callable[[], bool], asyncio.AbstractEventLoop | None]:
    """Called in the event loop a backend opens in: a cheap test, for each submit, that a call
    comes from this loop, and the loop itself if it is asyncio's (None: trio's).

    The test counts on the calling thread being checked first: in that thread, asyncio's loop
    is running only if it is the loop running there (asyncio refuses to run a second loop in a
    thread while one runs), unless this is a process forked from this one, which the fork count
    tells. ``asyncio.get_running_loop()`` would ask the kernel for the process id each time on
    Python 3.11: a system call, some 0.2 µs. Not told apart: a second loop run inside the pool's
    running one where a patch lets it (nest_asyncio's own ``asyncio.run`` reuses the running
    loop, but a new loop's ``run_until_complete`` would do it): a call from there fails when
    awaited, with asyncio's "attached to a different loop", instead of at once.

    Raises:
        RuntimeError: trio runs inside a running asyncio loop, where a pool cannot work.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: the other loop anyio runs on
        import trio

        current_token = trio.lowlevel.current_trio_token
        token = current_token()
        return lambda: current_token() is token, None  # it raises RuntimeError outside trio
    if in_trio():
        raise RuntimeError(
            "a pool cannot run in trio started inside a running asyncio event loop, as IPython's "
            "`%autoawait trio` does in a Jupyter kernel: use asyncio there (`%autoawait asyncio`, the "
            "default), or trio in a program of its own (trio.run)"
        )
    is_running, forks = loop.is_running, _Forks.count
    return lambda: is_running() and _Forks.count == forks, loop


def used_from_another_thread(pool: str, *, has_executor: bool) -> RuntimeError:
    """The error for a pool (``pool`` names it: "a Pool") used outside its event loop's thread,
    naming what works from there. anyio's ``from_thread.run`` finds the loop by itself only in a
    thread that ``to_thread`` started; any other thread must pass the loop's token."""
    from_anyio_thread = "in a thread started by anyio.to_thread.run_sync, anyio.from_thread.run(pool.run, fn, *args)"
    if has_executor:
        advice = f"use its executor view, pool.executor.submit(fn, *args).result(); {from_anyio_thread} works too"
    else:
        advice = (
            f"{from_anyio_thread}; from any other thread, anyio.from_thread.run(pool.run, fn, *args, token=token) "
            "with token = anyio.lowlevel.current_token() taken in the event loop"
        )
    return RuntimeError(f"{pool} must be used from the thread running its event loop; from another thread: {advice}")
