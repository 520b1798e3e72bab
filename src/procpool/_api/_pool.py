"""`Pool`: the public facade over worker slots and their processes."""

from __future__ import annotations

import enum
import functools
import itertools
import threading
from collections import OrderedDict
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Sized
from types import TracebackType
from typing import Any, NoReturn, ParamSpec, TypeVar, overload

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from .._child._call import ChunkRunner
from .._core._admission import Admission
from .._core._backlog import Backlog
from .._core._deadlines import Deadlines
from .._core._observe import EventHook, PoolObserver, PoolStats
from .._core._stream import StreamLink
from .._core._task import Task
from .._engine._healing import Healing
from .._engine._process import WorkerProcess, worker_context
from .._engine._reports import logging_levels
from .._engine._slot import WorkerSlot
from .._errors import PoolClosedError
from .._sizing import available_cpus, check_start_method
from .._transport._pickling import dumps_for_transport, dumps_function
from ._executor import PoolExecutor
from ._map import MapIterator
from ._progress import ProgressOption, open_progress
from ._stream import StreamIterator

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

_FUNCTION_IDS = 1024


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class _FunctionIds:
    """Content-addressed ids for pickled functions.

    Equal pickles share an id, so a worker that already loaded a function is sent only its id,
    while a function that changed (a closure over new values) gets a new id and is sent again.
    """

    def __init__(self) -> None:
        self._ids: OrderedDict[bytes, int] = OrderedDict()
        self._counter = itertools.count(1)

    def id_for(self, fn_bytes: bytes) -> int:
        fn_id = self._ids.get(fn_bytes)
        if fn_id is None:
            fn_id = self._ids[fn_bytes] = next(self._counter)
            if len(self._ids) > _FUNCTION_IDS:
                self._ids.popitem(last=False)
        else:
            self._ids.move_to_end(fn_bytes)
        return fn_id


def _describe(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(fn, functools.partial):
        name = f"partial({_describe(fn.func)})"
    return str(name) if name else type(fn).__qualname__


def _check_callable(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be a callable (a function, lambda, method...), not {type(fn).__name__}: {fn!r:.80}")


def _check_bool(name: str, value: object) -> None:
    # Strict: a truthy string such as "no" would silently mean yes.
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r:.80}")


def _check_positive_int(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if optional else ''}, not {value!r}")


def _check_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value!r}")


def _check_seconds(name: str, value: object) -> None:
    """A positive number of seconds, or None."""
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds > 0, or None, not {value!r}")


class _Verbs:
    """The ways to send work to a pool; shared by `Pool` and the views from `Pool.options`."""

    _pool: Pool
    _kill_on_cancel: bool
    _timeout: float | None = None  # seconds from the call, queue time included (`Pool.options`)
    _retries = 0  # re-runs of a task whose worker died under it (`Pool.options`)
    _room: Admission | None = None  # the pool's ``max_queued`` limit, if it has one

    @overload
    def submit(self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> Task[T]: ...
    @overload
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Task[T]: ...
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Task[Any]:
        """Submit ``fn(*args, **kwargs)`` and return its `Task` at once, without waiting.

        ``fn`` may be any callable cloudpickle can carry, or an ``async def`` function, which the
        worker runs on its own event loop. Must be called from the event loop's thread.

        Raises:
            TypeError: ``fn`` is not callable.
            SerializationError: ``fn`` or an argument cannot be pickled.
            PoolClosedError: the pool is not open.
        """
        fn_bytes, name = self._prepare(fn)
        task = self._pool._submit_pickled(fn_bytes, name, args, kwargs, self._kill_on_cancel)
        if self._timeout is not None or self._retries:
            self._apply_options(task, anyio.current_time())
        return task

    def _prepare(self, fn: Callable[..., Any]) -> tuple[bytes, str]:
        """Check a call can be submitted; the pickled function and its name."""
        _check_callable(fn)
        self._pool._check_open()
        name = _describe(fn)
        return dumps_for_transport(fn, f"the function {name}", dumps_function), name

    def _apply_options(self, task: Task[Any], called_at: float) -> None:
        task._retries = self._retries
        if self._timeout is not None:
            self._pool._deadlines_add(task, called_at + self._timeout, self._timeout)

    async def _wait_for_room(self) -> None:
        """Wait until a pool with ``max_queued`` has room (for at most the call's ``timeout``)."""
        room = self._pool._room
        if room is None:
            return
        if self._timeout is None:
            await room.wait()
        else:
            with anyio.fail_after(self._timeout):
                await room.wait()
        self._pool._check_open()  # it may have closed (or broken) while this call waited

    @overload
    async def run(self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
    @overload
    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a worker and return its result.

        An exception raised by ``fn`` is raised here as the same type, with the child's traceback
        as its ``__cause__``. If the worker dies, `WorkerCrashedError` is raised. If this call is
        cancelled (``anyio.fail_after``, ``asyncio.timeout``...), a queued call never starts and a
        running one has its worker killed (see ``kill_on_cancel``).

        On a pool with ``max_queued``, waits for room first, in turn with other callers. With
        ``pool.options(timeout=...)``, that wait counts towards the timeout.
        """
        if self._pool._room is None and self._timeout is None:
            return await self.submit(fn, *args, **kwargs)
        called_at = anyio.current_time()
        fn_bytes, name = self._prepare(fn)
        await self._wait_for_room()
        task = self._pool._submit_pickled(fn_bytes, name, args, kwargs, self._kill_on_cancel)
        if self._timeout is not None or self._retries:
            self._apply_options(task, called_at)
        return await task

    @overload
    def stream(self, fn: Callable[P, AsyncIterable[T]], /, *args: P.args, **kwargs: P.kwargs) -> StreamIterator[T]: ...
    @overload
    def stream(self, fn: Callable[P, Iterable[T]], /, *args: P.args, **kwargs: P.kwargs) -> StreamIterator[T]: ...
    def stream(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> StreamIterator[Any]:
        """Run the generator ``fn(*args, **kwargs)`` in a worker and receive its items as they come.

        ``fn`` may be a generator function, an async generator function, or any function that
        returns an iterable. The worker runs ahead of the consumer by at most a few items (it waits
        for the parent to take them); leaving the loop early, with ``async with`` or `aclose`, closes
        the generator in the worker so its ``finally`` blocks run, and frees the worker. Awaiting
        the stream collects its items into a list.

        Example::

            async with pool.stream(read_records, path) as records:
                async for record in records:
                    ...
        """
        if self._retries:
            raise ValueError("retries does not apply to pool.stream(): a re-run would send its items again")
        fn_bytes, name = self._prepare(fn)
        link = StreamLink()
        pool = self._pool
        task = pool._submit_pickled(fn_bytes, name, args, kwargs, self._kill_on_cancel, stream=link)
        if self._timeout is not None:
            self._apply_options(task, anyio.current_time())
        return StreamIterator(task, link, pool._kill_grace)

    @overload
    def map(
        self,
        fn: Callable[..., Coroutine[Any, Any, R]],
        /,
        *iterables: Iterable[Any] | AsyncIterable[Any],
        ordered: bool = True,
        chunksize: int = 1,
        max_in_flight: int | None = None,
        progress: ProgressOption = False,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        fn: Callable[..., R],
        /,
        *iterables: Iterable[Any] | AsyncIterable[Any],
        ordered: bool = True,
        chunksize: int = 1,
        max_in_flight: int | None = None,
        progress: ProgressOption = False,
    ) -> MapIterator[R]: ...
    def map(
        self,
        fn: Callable[..., Any],
        /,
        *iterables: Iterable[Any] | AsyncIterable[Any],
        ordered: bool = True,
        chunksize: int = 1,
        max_in_flight: int | None = None,
        progress: ProgressOption = False,
    ) -> MapIterator[Any]:
        """``fn`` applied to the items of ``iterables`` (like builtin ``map``), as an async iterator;
        await it instead to collect the results into a list.

        Args:
            fn: the function; called as ``fn(a, b, ...)`` with one item from each iterable.
            iterables: sync or async iterables, possibly endless; the shortest ends the map.
            ordered: yield results in input order (True) or as they complete (False).
            chunksize: items sent to a worker in one task; raise it for many tiny items.
            max_in_flight: chunks submitted ahead of the consumer (default: twice the workers);
                inputs are pulled only as fast as results are consumed.
            progress: show a progress bar on stderr: True picks tqdm on a terminal when it is
                installed (``procpool[progress]``), plain text otherwise; ``"tqdm"`` or ``"text"``
                force one; a callable is called as ``callback(done, total)`` as results come in
                (``total`` is None when the iterables have no length).
        """
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        return self._map(
            fn,
            iterables,
            star=False,
            ordered=ordered,
            chunksize=chunksize,
            max_in_flight=max_in_flight,
            progress=progress,
        )

    @overload
    def starmap(
        self,
        fn: Callable[..., Coroutine[Any, Any, R]],
        iterable: Iterable[Iterable[Any]] | AsyncIterable[Iterable[Any]],
        /,
        *,
        ordered: bool = True,
        chunksize: int = 1,
        max_in_flight: int | None = None,
        progress: ProgressOption = False,
    ) -> MapIterator[R]: ...
    @overload
    def starmap(
        self,
        fn: Callable[..., R],
        iterable: Iterable[Iterable[Any]] | AsyncIterable[Iterable[Any]],
        /,
        *,
        ordered: bool = True,
        chunksize: int = 1,
        max_in_flight: int | None = None,
        progress: ProgressOption = False,
    ) -> MapIterator[R]: ...
    def starmap(
        self,
        fn: Callable[..., Any],
        iterable: Iterable[Iterable[Any]] | AsyncIterable[Iterable[Any]],
        /,
        *,
        ordered: bool = True,
        chunksize: int = 1,
        max_in_flight: int | None = None,
        progress: ProgressOption = False,
    ) -> MapIterator[Any]:
        """``fn(*args)`` for each ``args`` in ``iterable`` (like ``itertools.starmap``).

        The same as `map` in every other way: iterate it with ``async for``, or await it for a list.
        """
        return self._map(
            fn,
            (iterable,),
            star=True,
            ordered=ordered,
            chunksize=chunksize,
            max_in_flight=max_in_flight,
            progress=progress,
        )

    def _map(
        self,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        *,
        star: bool,
        ordered: bool,
        chunksize: int,
        max_in_flight: int | None,
        progress: ProgressOption,
    ) -> MapIterator[Any]:
        _check_callable(fn)
        for iterable in iterables:
            if not isinstance(iterable, (Iterable, AsyncIterable)):
                raise TypeError(f"expected iterables or async iterables, not {type(iterable).__name__}")
        _check_bool("ordered", ordered)
        _check_positive_int("chunksize", chunksize, optional=False)
        _check_positive_int("max_in_flight", max_in_flight, optional=True)
        pool = self._pool
        pool._check_open()
        name = _describe(fn)
        runner_bytes = dumps_for_transport(ChunkRunner(fn), f"the function {name}")
        kill_on_cancel = self._kill_on_cancel
        with_options = self._timeout is not None or self._retries > 0

        def submit_chunk(chunk: tuple[tuple[Any, ...], ...]) -> Task[list[Any]]:
            task: Task[list[Any]] = pool._submit_pickled(runner_bytes, name, (chunk,), {}, kill_on_cancel)
            if with_options:
                self._apply_options(task, anyio.current_time())
            return task

        sized = all(isinstance(iterable, Sized) for iterable in iterables)
        total = min(len(iterable) for iterable in iterables) if sized else None  # type: ignore[arg-type]
        return MapIterator(
            submit_chunk,
            iterables,
            star=star,
            ordered=ordered,
            chunksize=chunksize,
            max_in_flight=max_in_flight or 2 * pool.workers,
            progress=open_progress(progress, total, name),
            wait_for_room=self._wait_for_room if pool._room is not None else None,
        )


class PoolOptions(_Verbs):
    """A view of a `Pool` whose ``run``/``submit``/``map`` use other per-call options."""

    def __init__(self, pool: Pool, *, kill_on_cancel: bool, timeout: float | None = None, retries: int = 0) -> None:
        _check_seconds("timeout", timeout)
        _check_count("retries", retries)
        self._pool = pool
        self._kill_on_cancel = kill_on_cancel
        self._timeout = None if timeout is None else float(timeout)
        self._retries = retries


class _TaskBookkeeping:
    """What a pool that runs its own tasks keeps about them (`Pool`, `testing.InlinePool`): the
    outstanding ones, their counts and times for ``stats()``, and their deadlines."""

    _outstanding: set[Task[Any]]
    _observer: PoolObserver
    _deadlines: Deadlines | None

    def _deadlines_add(self, task: Task[Any], deadline: float, timeout: float) -> None:
        assert self._deadlines is not None
        self._deadlines.add(task, deadline, timeout)

    def _task_done(self, task: Task[Any]) -> None:
        self._outstanding.discard(task)
        self._observer.task_done(task)


class _TaskGroupOwner:
    """How a pool that enters a task group in ``__aenter__`` leaves it (`Pool`, `DaskPool`).

    A normal exit waits for the submitted tasks (`aclose`); an exit by an exception, or a
    cancellation while waiting, tears everything down (`_tear_down`) and lets the exception go on
    unchanged, never wrapped in an ExceptionGroup.
    """

    _task_group: TaskGroup | None
    _state: _State

    async def aclose(self) -> None:
        raise NotImplementedError

    async def _tear_down(self, task_group: TaskGroup) -> None:
        raise NotImplementedError

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._task_group is not None
        task_group, self._task_group = self._task_group, None
        try:
            if exc is None:
                try:
                    await self.aclose()
                except BaseException:  # cancelled while waiting for the tasks
                    await self._tear_down(task_group)
                    raise
                await task_group.__aexit__(None, None, None)
            else:
                await self._tear_down(task_group)
        finally:
            self._state = _State.CLOSED
        return None


class Pool(_Verbs, _TaskGroupOwner, _TaskBookkeeping):
    """A pool of worker processes that async code awaits like any other IO.

    Use it as an async context manager: the workers are started and ready when ``async with``
    returns, and stopped when it exits. Leaving the block normally waits for every submitted task;
    leaving it by an exception cancels them.

    Args:
        workers: number of worker processes; None means the CPUs this process may use
            (affinity mask and cgroup CPU quota).
        initializer: called as ``initializer(*initargs)`` in each new worker before its first task.
        initargs: arguments for ``initializer``.
        max_tasks_per_worker: replace a worker after it has run this many tasks (None: never).
        start_method: ``"forkserver"`` (the default on Linux) or ``"spawn"``.
        kill_on_cancel: when a running task is cancelled, kill its worker (True, the default) or
            let it finish and drop its result (False). ``Pool.options`` overrides it per call.
        kill_grace: seconds a worker gets after SIGTERM before SIGKILL, and to exit on close.
        forward_logs: send the workers' log records to this process's loggers of the same name,
            for the levels set here when the pool starts (records carry ``worker_pid``).
        forward_output: send what workers write to ``sys.stdout``/``sys.stderr`` to this process's
            ``sys.stdout``/``sys.stderr``, a line at a time; False lets them write straight to the
            inherited file descriptors.
        on_event: called in the event loop's thread with a `WorkerStarted`, `WorkerExited`,
            `TaskStarted` or `TaskEnded` event as each happens (to emit traces, for example).
        max_queued: at most this many tasks may wait to start (`queued`); None: no limit. When
            the pool is full, ``await pool.run(...)`` and ``pool.map`` wait for room, in turn,
            while ``pool.submit``, ``pool.stream`` and ``pool.executor.submit`` raise
            `PoolFullError` at once, so a server can shed load instead of queueing without bound.
        max_memory_per_worker: bytes of resident memory (RSS) a worker may reach; a worker over
            it is replaced after the task that took it there (None: no limit). Read from
            ``/proc`` at most every 50 ms per worker, after a task ends.
        max_crashes_per_task: a task that kills its worker this many times in a row (with
            ``pool.options(retries=...)``) fails with `PoisonTaskError` rather than being run
            again.
        idle_timeout: seconds a worker may wait for a task before it is stopped, down to
            ``min_workers``; stopped workers are started again when work comes (None: never).
        min_workers: how many workers ``idle_timeout`` keeps running.

    Raises:
        ValueError: an argument is out of range or an unknown start method is named.
        TypeError: ``initializer`` is not callable, ``initargs`` not iterable, or an option has the wrong type.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        max_tasks_per_worker: int | None = None,
        start_method: str | None = None,
        kill_on_cancel: bool = True,
        kill_grace: float = 0.5,
        forward_logs: bool = True,
        forward_output: bool = True,
        on_event: EventHook | None = None,
        max_queued: int | None = None,
        max_memory_per_worker: int | None = None,
        max_crashes_per_task: int = 3,
        idle_timeout: float | None = None,
        min_workers: int = 0,
    ) -> None:
        _check_positive_int("workers", workers, optional=True)
        _check_positive_int("max_tasks_per_worker", max_tasks_per_worker, optional=True)
        _check_positive_int("max_queued", max_queued, optional=True)
        _check_positive_int("max_memory_per_worker", max_memory_per_worker, optional=True)
        _check_positive_int("max_crashes_per_task", max_crashes_per_task, optional=False)
        _check_seconds("idle_timeout", idle_timeout)
        _check_count("min_workers", min_workers)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, not {type(initializer).__name__}")
        if not isinstance(initargs, Iterable) or isinstance(initargs, (str, bytes)):
            raise TypeError(f"initargs must be a tuple (or other iterable) of arguments, not {initargs!r:.80}")
        _check_bool("kill_on_cancel", kill_on_cancel)
        if not isinstance(kill_grace, (int, float)) or isinstance(kill_grace, bool) or not kill_grace >= 0:
            raise ValueError(f"kill_grace must be a number of seconds >= 0, not {kill_grace!r}")  # NaN fails >= too
        _check_bool("forward_logs", forward_logs)
        _check_bool("forward_output", forward_output)
        if on_event is not None and not callable(on_event):
            raise TypeError(f"on_event must be callable or None, not {type(on_event).__name__}")
        self._pool = self
        self._kill_on_cancel = bool(kill_on_cancel)
        self.workers: int = workers if workers is not None else available_cpus()
        self.start_method: str = check_start_method(start_method)
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._max_tasks_per_worker = max_tasks_per_worker
        self._kill_grace = float(kill_grace)
        self._forward_logs = bool(forward_logs)
        self._forward_output = bool(forward_output)
        self._observer = PoolObserver(on_event)
        self._state = _State.NEW
        self._thread: int | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._task_ids = itertools.count(1)
        self._function_ids = _FunctionIds()
        self._outstanding: set[Task[Any]] = set()
        self._backlog = Backlog()
        self._slots: list[WorkerSlot] = []
        self._task_group: TaskGroup | None = None
        self._slots_running = 0
        self._stopped: anyio.Event | None = None
        self._executor: PoolExecutor | None = None
        self._max_queued = max_queued
        self._max_memory_per_worker = max_memory_per_worker
        self._max_crashes_per_task = max_crashes_per_task
        self._idle_timeout = None if idle_timeout is None else float(idle_timeout)
        self._min_workers = min_workers
        self._room: Admission | None = None
        self._deadlines: Deadlines | None = None
        self._healing: Healing | None = None

    def __repr__(self) -> str:
        return f"<procpool.Pool workers={self.workers} start_method={self.start_method!r} {self._state.value}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a procpool.Pool cannot be pickled or sent to a worker: it belongs to the process that "
            "created it; send data to tasks and await the results in the parent"
        )

    @property
    def queued(self) -> int:
        """How many submitted tasks wait to start: in the backlog, or sent ahead to a busy worker."""
        return len(self._backlog) + sum(slot.waiting for slot in self._slots)

    def stats(self) -> PoolStats:
        """A snapshot of the pool's workers, tasks and times (see `PoolStats`).

        Cheap, and safe to call from any thread (a metrics exporter's, say).
        """
        slots = list(self._slots)
        return self._observer.stats(
            workers=self.workers,
            alive=sum(slot.alive for slot in slots),
            busy=sum(slot.busy for slot in slots),
            queued=self.queued,
        )

    @property
    def executor(self) -> PoolExecutor:
        """A `concurrent.futures.Executor` backed by this pool's workers, usable from any thread.

        Example: ``await loop.run_in_executor(pool.executor, fn, x)``.

        Raises:
            PoolClosedError: the pool is not started yet.
        """
        if self._executor is None:
            if self._thread is None or self._token is None:
                raise PoolClosedError("the pool is not started: use it as `async with procpool.Pool() as pool:`")
            self._executor = PoolExecutor(self, self._token, self._thread)
        return self._executor

    def options(
        self, *, kill_on_cancel: bool | None = None, timeout: float | None = None, retries: int = 0
    ) -> PoolOptions:
        """A view of this pool whose ``run``/``submit``/``stream``/``map`` use the given options.

        Example: ``await pool.options(kill_on_cancel=False).run(fn)`` lets ``fn`` finish even if
        the awaiting coroutine is cancelled.

        Args:
            kill_on_cancel: as the pool's option of that name (None: the pool's setting).
            timeout: seconds from the call to the result, time spent waiting (for room, in the
                queue) included. A task still queued at its deadline never starts; a running one
                is stopped as a cancel would stop it. Either way it fails with `TimeoutError`,
                also through its `Task` and ``pool.executor``. None: no timeout.
            retries: how many times a task whose worker died under it (a crash, a kill from
                outside) is run again before it fails with `WorkerCrashedError`. Only for
                functions that are safe to run twice; exceptions raised by the function are
                never retried. Not for ``stream``.

        Raises:
            TypeError, ValueError: an option has the wrong type or is out of range.
        """
        if kill_on_cancel is not None:
            _check_bool("kill_on_cancel", kill_on_cancel)
        return PoolOptions(
            self,
            kill_on_cancel=self._kill_on_cancel if kill_on_cancel is None else bool(kill_on_cancel),
            timeout=timeout,
            retries=retries,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Pool:
        if self._state is not _State.NEW:
            raise RuntimeError("a Pool can be entered only once; create a new Pool")
        self._state = _State.CLOSING  # not open for tasks until the workers are ready
        self._thread = threading.get_ident()
        self._token = anyio.lowlevel.current_token()
        context = worker_context(self.start_method)
        log_levels = logging_levels() if self._forward_logs else None
        setup = dumps_for_transport(
            (self._initializer, self._initargs, log_levels, self._forward_output), "the initializer or its arguments"
        )
        spawn = functools.partial(WorkerProcess.spawn, context, setup)
        try:
            workers = await self._spawn_all(spawn)
        except BaseException:
            self._state = _State.CLOSED
            raise
        self._stopped = anyio.Event()
        self._task_group = task_group = anyio.create_task_group()
        await task_group.__aenter__()
        if self._max_queued is not None:
            self._room = Admission(self._max_queued, lambda: self.queued)
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
                self._backlog,
                max_tasks_per_worker=self._max_tasks_per_worker,
                kill_grace=self._kill_grace,
                observer=self._observer,
                healing=healing,
            )
            self._slots.append(slot)
            self._slots_running += 1
            self._task_group.start_soon(self._run_slot, slot, worker)
        self._state = _State.OPEN
        return self

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
        """Every slot has stopped: end the helpers that outlive no slot, then tell `aclose`."""
        if self._deadlines is not None:
            self._deadlines.stop()
        if self._healing is not None:
            with anyio.CancelScope(shield=True):
                await self._healing.close(self._kill_grace)
        if self._stopped is not None:
            self._stopped.set()

    async def aclose(self) -> None:
        """Close the pool: refuse new tasks, wait for the submitted ones, stop the workers.

        Safe to call more than once; ``async with`` calls it on a normal exit.
        """
        if self._state is _State.NEW:
            self._state = _State.CLOSED
            return
        self._stop_accepting()
        if self._stopped is not None:
            await self._stopped.wait()

    async def _tear_down(self, task_group: TaskGroup) -> None:
        self._abort()
        task_group.cancel_scope.cancel()
        await task_group.__aexit__(None, None, None)

    def _stop_accepting(self) -> None:
        if self._state is _State.OPEN:
            self._state = _State.CLOSING
        self._backlog.close()
        if self._room is not None:
            self._room.close()

    def _on_broken(self) -> None:
        """The initializer raised in a replacement worker: fail what waits, and every new call."""
        healing = self._healing
        assert healing is not None
        while (task := self._backlog.get_nowait()) is not None:
            task._set_exception(healing.broken_error())
        if self._room is not None:
            self._room.close()  # callers waiting for room fail on `_check_open`

    def _abort(self) -> None:
        """Cancel everything still outstanding, killing running tasks whatever their options."""
        self._stop_accepting()
        for task in list(self._outstanding):
            task.kill_on_cancel = True
            task.cancel()

    # -- submission ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._healing is not None and self._healing.broken is not None and self._state is _State.OPEN:
            raise self._healing.broken_error()
        if self._state is not _State.OPEN:
            if self._state is _State.NEW:
                raise PoolClosedError("the pool is not started: use it as `async with procpool.Pool() as pool:`")
            raise PoolClosedError("the pool is closed: submit work before leaving `async with`")
        if threading.get_ident() != self._thread:
            raise RuntimeError(
                "a Pool must be used from the thread running its event loop; from another thread, "
                "use anyio.from_thread.run(pool.run, fn, ...)"
            )

    def _submit_pickled(
        self,
        fn_bytes: bytes,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kill_on_cancel: bool,
        stream: StreamLink | None = None,
    ) -> Task[Any]:
        room = self._room
        if room is not None:
            room.enter()
        args_bytes = dumps_for_transport((args, kwargs), f"an argument of {name}")
        task_id = next(self._task_ids)
        call = (self._function_ids.id_for(fn_bytes), fn_bytes, args_bytes)
        task: Task[Any] = Task(task_id, f"{name}() [task {task_id}]", call, kill_on_cancel, stream=stream)
        task._withdraw = self._backlog.discard
        self._outstanding.add(task)
        task._add_done_callback(self._task_done)
        if room is not None:
            # Room may come when it starts (sent to an idle worker) or ends (the next one starts).
            task._on_leave_queue = room.notify
            task._add_done_callback(room.notify)
        self._backlog.put(task)
        return task
