"""`DaskPool`: the `Pool` surface (``run``, ``submit``, ``map``, `Task`) on a Dask distributed cluster.

Importing this module does not import Dask: `DaskPool` imports ``distributed`` when it is created.
Each call travels as two pickled byte strings to `_dask_worker.run_call` on a Dask worker, so it
reaches the cluster exactly as it would reach a procpool worker, and comes back the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import anyio
from anyio.abc import TaskGroup

from .._api import PoolFacade, check_positive_int
from .._core import Job, PoolState, leave_task_group, used_from_another_thread
from .._errors import PoolClosedError, WorkerCrashedError
from .._sizing import available_cpus
from .._transport import unpack_exception
from . import _worker as _dask_worker

if TYPE_CHECKING:
    from distributed import Client, Future, KilledWorker, LocalCluster
    from distributed.security import Security


class _ClusterLike(Protocol):
    """Any Dask cluster object: ``LocalCluster``, dask-jobqueue, dask-kubernetes, dask-cloudprovider..."""

    @property
    def scheduler_address(self) -> str: ...


def _require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError("procpool.DaskPool needs Dask distributed: pip install 'procpool[dask]'") from exc


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # Dask's asynchronous Client is built on asyncio (tornado) and refuses any other loop.
        raise RuntimeError(
            "procpool.DaskPool needs an asyncio event loop (asyncio or uvloop), because Dask's client runs on "
            "asyncio; under trio use procpool.Pool, or run the part of the program that uses Dask with asyncio"
        ) from None


def _scheduler_of(target: str | _ClusterLike | Client) -> tuple[str, Security | None]:
    """The scheduler address and security settings of what the user gave to `DaskPool`."""
    from distributed import Client

    if isinstance(target, str):
        return target, None
    if isinstance(target, Client):
        if target.scheduler is None:
            raise ValueError("the Client given to DaskPool is not connected yet: await it (or pass its address) first")
        return str(target.scheduler.address), target.security
    return target.scheduler_address, getattr(target, "security", None)


def _worker_lost(error: KilledWorker, task: str) -> WorkerCrashedError:
    worker = error.last_worker
    address = getattr(worker, "address", "?")
    crashed = WorkerCrashedError(pid=getattr(worker, "pid", None), exitcode=None, signal_name=None, task=task)
    # WorkerCrashedError words its message for a local worker's exit status, which Dask does not report.
    crashed.args = (
        f"Dask worker {address} died while running {task} (Dask gave up after "
        f"{error.allowed_failures + 1} attempt(s); the cluster's nanny restarts lost workers)",
    )
    crashed.__cause__ = error
    return crashed


async def _outcome(future: Future[tuple[str, bytes]]) -> tuple[str, bytes]:
    outcome: tuple[str, bytes] = await future
    return outcome


def _consume_outcome(gathering: asyncio.Future[tuple[str, bytes]]) -> None:
    if not gathering.cancelled():
        gathering.exception()  # retrieved here, so an abandoned gather's error is not logged


class DaskPool(PoolFacade):
    """The same async API as `Pool` (``run``, ``submit``, ``map``, `Task`), on a Dask distributed cluster.

    Use it as an async context manager, under asyncio or uvloop (not trio: Dask's client runs on
    asyncio). On entry it connects an asynchronous client of its own, bound to the running loop, to
    the cluster's scheduler; on exit it closes only that client (and the ``LocalCluster`` it started,
    if any), never a cluster or client you gave it. Leaving the block normally waits for every
    submitted task; leaving it by an exception cancels them.

    What differs from `Pool`: a cancelled task (``task.cancel()``, a timeout, leaving the block by
    an exception) is dropped by Dask if it has not started, but a running one cannot be stopped:
    it runs to its end on its Dask worker and its result is dropped, as with
    ``kill_on_cancel=False``. Dask does not tell a client when a task starts, so `queued` counts
    every submitted task that has not finished. A worker that dies fails its task with
    `WorkerCrashedError` once Dask gives up retrying it on other workers (the scheduler's
    ``distributed.scheduler.allowed-failures``, 3 by default). Each task costs a round trip
    through the scheduler (milliseconds; see docs/scaling.md): use ``map(..., chunksize=...)`` for
    many small tasks.

    The Dask workers need procpool installed, and whatever modules the tasks import; functions
    and lambdas defined in ``__main__`` travel by value (unlike with `Pool`, whose workers import
    the main script), so the script itself is not needed there.

    Args:
        address: the cluster: a scheduler address (``"tcp://10.0.0.5:8786"``), a Dask cluster
            object (``LocalCluster``, dask-jobqueue, dask-kubernetes...), or a ``distributed.Client``
            (its scheduler and security settings are used). None starts a ``LocalCluster`` on this
            machine for the pool's lifetime: worker processes of one thread each, listening on
            127.0.0.1 only (its HTTP endpoint on a free port).
        workers: with ``address=None``, the number of worker processes of that ``LocalCluster``
            (default: the CPUs this process may use).

    Raises:
        ImportError: Dask distributed is not installed (``pip install 'procpool[dask]'``).
        TypeError: ``address`` is not one of the kinds above.
        ValueError: ``workers`` is not a positive integer, or is given with an ``address``.
    """

    def __init__(self, address: str | _ClusterLike | Client | None = None, *, workers: int | None = None) -> None:
        _require_distributed()
        from distributed import Client

        check_positive_int("workers", workers, optional=True)
        if address is not None and workers is not None:
            raise ValueError(
                "workers sizes only the LocalCluster that DaskPool starts when given no address; "
                "size a cluster you connect to with its own tools"
            )
        # A cluster object is recognised by its class: reading the property may fail before it starts.
        if not (address is None or isinstance(address, (str, Client)) or hasattr(type(address), "scheduler_address")):
            raise TypeError(
                "address must be a Dask scheduler address ('tcp://host:8786'), a Dask cluster object, "
                f"a distributed.Client, or None for a LocalCluster, not {type(address).__name__}"
            )
        self._kill_on_cancel = False
        self._address = address
        self._backend = _DaskBackend(address, (workers or available_cpus()) if address is None else 0)

    @property
    def workers(self) -> int:
        """The cluster's worker threads when the pool opened (before: the LocalCluster's size, or 0)."""
        return self._backend.workers

    def __repr__(self) -> str:
        where = "LocalCluster" if self._address is None else self._address
        return f"<procpool.DaskPool {where!s:.60} workers={self.workers} {self._backend.state.value}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a procpool.DaskPool cannot be pickled or sent to a worker: it belongs to the process that "
            "created it; send data to tasks and await the results in the parent"
        )

    @property
    def queued(self) -> int:
        """How many submitted tasks have not finished: Dask does not report when a task starts, so
        unlike `Pool.queued` this counts the tasks running on the cluster too."""
        return self._backend.queued

    def options(self, *, kill_on_cancel: bool, timeout: None = None, retries: int = 0) -> DaskPool:
        """This pool, for code written for `Pool.options`: only ``kill_on_cancel=False`` applies.

        A Dask worker cannot stop a running task, so DaskPool always lets it finish and drops its
        result, which is what ``kill_on_cancel=False`` asks for. ``timeout`` and ``retries`` are
        not offered: use ``anyio.fail_after`` around the call, and Dask's own
        ``distributed.scheduler.allowed-failures`` for tasks whose worker died.

        Raises:
            ValueError: ``kill_on_cancel=True``, a ``timeout`` or ``retries`` was asked for.
        """
        if timeout is not None or retries:
            raise ValueError(
                "DaskPool.options() takes no timeout or retries: wrap the call in anyio.fail_after(...), "
                "and Dask retries tasks whose worker died itself (distributed.scheduler.allowed-failures)"
            )
        if kill_on_cancel:
            raise ValueError(
                "DaskPool cannot kill a running task: a Dask worker cannot stop it, so cancelled tasks that "
                "have started always run to their end (kill_on_cancel=False); use procpool.Pool to kill them"
            )
        return self

    def stream(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available on Dask: a Dask task returns one result, it cannot send items as it makes them.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            "DaskPool cannot stream a generator's items as they come: a Dask task returns one result; "
            "return a list from pool.run, split the work with pool.map, or use procpool.Pool.stream"
        )


class _DaskBackend:
    """Runs jobs on a Dask cluster: each as one Dask task of `run_call`, awaited by a driver task."""

    workers_import_main = False  # a cluster's workers were started by something else
    memory_files = None  # Dask serializes arguments its own way
    loop = None  # `check_open` checks the thread only

    def __init__(self, address: str | _ClusterLike | Client | None, workers: int) -> None:
        self.workers = workers
        self.state = PoolState.NEW
        self.admission = None
        self.kill_grace = 0.0
        self.queued = 0
        self._address = address
        self._thread: int | None = None
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._task_group: TaskGroup | None = None
        self._job_ids = itertools.count(1)
        self._outstanding: set[Job] = set()  # jobs whose Dask future is still held
        self._drained: anyio.Event | None = None  # set when the last of them is released, for close()

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self.state is not PoolState.NEW:
            raise RuntimeError("a DaskPool can be entered only once; create a new DaskPool")
        _require_asyncio()
        self.state = PoolState.CLOSING  # not open for tasks until connected
        self._thread = threading.get_ident()
        try:
            client = await self._connect()
            nthreads = await client.nthreads()
        except BaseException:
            await self._disconnect()
            self.state = PoolState.CLOSED
            raise
        # What the cluster runs at once now (it may grow or shrink); map's default backpressure.
        self.workers = max(1, sum(nthreads.values()))
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self.state = PoolState.OPEN

    async def _connect(self) -> Client:
        from distributed import Client, LocalCluster

        if self._address is None:
            # Kept before it is awaited, so that a failed or cancelled start is still closed.
            self._cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",  # not None: the scheduler would still serve HTTP on 8787, maybe taken
                asynchronous=True,
            )
            await self._cluster
            address, security = _scheduler_of(self._cluster)
        else:
            address, security = _scheduler_of(self._address)
        # Our own asynchronous client, bound to this loop; never the default client of the process,
        # so the user's own Dask calls are not routed through it.
        self._client = Client(address, asynchronous=True, security=security, set_as_default=False)
        await self._client
        return self._client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        with anyio.CancelScope(shield=True):
            try:
                if client is not None:
                    await client.close()
            finally:
                if cluster is not None:
                    closing = cluster.close()
                    assert closing is not None  # an asynchronous cluster's close() is awaitable
                    await closing

    async def close(self) -> None:
        """Refuse new tasks, wait for the submitted ones, disconnect from the cluster (and stop the
        ``LocalCluster`` the pool started, if any)."""
        if self.state is PoolState.NEW:
            self.state = PoolState.CLOSED
            return
        if self.state is PoolState.OPEN:
            self.state = PoolState.CLOSING
        while self._outstanding:
            self._drained = anyio.Event()
            await self._drained.wait()
        await self._disconnect()

    async def exit(self, *, abort: bool) -> None:
        """With ``abort``, cancel every outstanding task and stop their drivers; then disconnect."""
        task_group, self._task_group = self._task_group, None
        if abort:
            self.state = PoolState.CLOSING
        try:
            await leave_task_group(task_group, cancelling=self._outstanding if abort else None)
        finally:
            try:
                await self._disconnect()
            finally:
                self.state = PoolState.CLOSED

    # -- submission ----------------------------------------------------------------------------

    def new_job_id(self) -> int:
        return next(self._job_ids)

    def set_deadline(self, job: Job, deadline: float, timeout: float) -> None:
        raise NotImplementedError("DaskPool takes no timeout: wrap the call in anyio.fail_after(...)")

    def check_open(self) -> None:
        if self.state is not PoolState.OPEN:
            if self.state is PoolState.NEW:
                raise PoolClosedError("the pool is not started: use it as `async with procpool.DaskPool(...) as pool:`")
            raise PoolClosedError("the pool is closed: submit work before leaving `async with`")
        if threading.get_ident() != self._thread:
            raise used_from_another_thread("a DaskPool", has_executor=False)

    def submit(self, job: Job) -> None:
        assert self._task_group is not None
        task = job.task
        assert task is not None
        self.queued += 1
        self._outstanding.add(job)
        task.add_done_callback(self._left_queue)
        # Its driver sends it to Dask, in turn: a job cancelled before then never reaches the cluster.
        self._task_group.start_soon(self._drive, job)

    def _left_queue(self, _: object) -> None:
        self.queued -= 1

    async def _drive(self, job: Job) -> None:
        """Send one job to Dask, wait for its future and hand its outcome to the job."""
        from distributed import KilledWorker

        future: Future[tuple[str, bytes]] | None = None
        try:
            # Dask does not say when a task starts: once sent, it stays pending until its outcome comes.
            if not job.take():
                return  # cancelled since its submit
            assert self._client is not None
            with anyio.CancelScope() as waiting:
                # Cancelled by its caller, queued or running alike: stop waiting. Releasing the
                # future (below) makes Dask drop the call if it has not started yet.
                job.on_cancel = lambda _: waiting.cancel()
                try:
                    # Only our two byte strings meet Dask's submit keywords; a unique key and
                    # pure=False keep Dask from merging identical calls into one.
                    future = self._client.submit(
                        _dask_worker.run_call,
                        job.fn_bytes,
                        job.args_bytes,
                        key=f"{job.name}-{uuid.uuid4().hex}",
                        pure=False,
                    )
                    # Dask gathers the results of concurrent awaits in one shared request;
                    # cancelling one await would cancel it for all, so cancellation stops only
                    # our wait and leaves the gather to finish.
                    gathering = asyncio.ensure_future(_outcome(future))
                    gathering.add_done_callback(_consume_outcome)
                    kind, body = await asyncio.shield(gathering)
                except KilledWorker as exc:
                    job.fail(_worker_lost(exc, job.description))
                except Exception as exc:  # the scheduler is gone, the task could not be loaded...
                    job.fail(exc)
                else:
                    if kind == _dask_worker.OK:
                        job.succeed(body)
                    else:
                        job.fail(unpack_exception(body))
        finally:
            if future is not None:
                future.release()
            job.cancel_now()  # a no-op if it is done; else the pool is being torn down around it
            self._outstanding.discard(job)
            if not self._outstanding and self._drained is not None:
                self._drained.set()
