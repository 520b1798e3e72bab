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

from ._backlog import Backlog
from ._errors import PoolClosedError
from ._executor import PoolExecutor
from ._map import MapIterator
from ._observe import EventHook, PoolObserver, PoolStats
from ._process import WorkerProcess, worker_context
from ._progress import ProgressOption, open_progress
from ._reports import logging_levels
from ._sizing import available_cpus, check_start_method
from ._slot import WorkerSlot
from ._stream import StreamIterator, StreamLink
from ._task import Task
from ._wire import dumps_for_transport, dumps_function
from ._worker import ChunkRunner

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


class _Verbs:
    """The ways to send work to a pool; shared by `Pool` and the views from `Pool.options`."""

    _pool: Pool
    _kill_on_cancel: bool

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
        _check_callable(fn)
        pool = self._pool
        pool._check_open()
        name = _describe(fn)
        fn_bytes = dumps_for_transport(fn, f"the function {name}", dumps_function)
        return pool._submit_pickled(fn_bytes, name, args, kwargs, self._kill_on_cancel)

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
        """
        return await self.submit(fn, *args, **kwargs)

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
        _check_callable(fn)
        pool = self._pool
        pool._check_open()
        name = _describe(fn)
        fn_bytes = dumps_for_transport(fn, f"the function {name}", dumps_function)
        link = StreamLink()
        task = pool._submit_pickled(fn_bytes, name, args, kwargs, self._kill_on_cancel, stream=link)
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

        def submit_chunk(chunk: tuple[tuple[Any, ...], ...]) -> Task[list[Any]]:
            return pool._submit_pickled(runner_bytes, name, (chunk,), {}, kill_on_cancel)

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
        )


class PoolOptions(_Verbs):
    """A view of a `Pool` whose ``run``/``submit``/``map`` use other per-call options."""

    def __init__(self, pool: Pool, *, kill_on_cancel: bool) -> None:
        self._pool = pool
        self._kill_on_cancel = kill_on_cancel


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


class Pool(_Verbs, _TaskGroupOwner):
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

    Raises:
        ValueError: an argument is out of range or an unknown start method is named.
        TypeError: ``initializer`` is not callable, ``initargs`` not iterable, ``kill_on_cancel`` not a bool.
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
    ) -> None:
        _check_positive_int("workers", workers, optional=True)
        _check_positive_int("max_tasks_per_worker", max_tasks_per_worker, optional=True)
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

    def options(self, *, kill_on_cancel: bool) -> PoolOptions:
        """A view of this pool whose ``run``/``submit``/``map`` use the given options.

        Example: ``await pool.options(kill_on_cancel=False).run(fn)`` lets ``fn`` finish even if
        the awaiting coroutine is cancelled.
        """
        _check_bool("kill_on_cancel", kill_on_cancel)
        return PoolOptions(self, kill_on_cancel=kill_on_cancel)

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
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        for worker in workers:
            slot = WorkerSlot(
                spawn,
                self._backlog,
                max_tasks_per_worker=self._max_tasks_per_worker,
                kill_grace=self._kill_grace,
                observer=self._observer,
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
            if self._slots_running == 0 and self._stopped is not None:
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

    def _abort(self) -> None:
        """Cancel everything still outstanding, killing running tasks whatever their options."""
        self._stop_accepting()
        for task in list(self._outstanding):
            task.kill_on_cancel = True
            task.cancel()

    # -- submission ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            if self._state is _State.NEW:
                raise PoolClosedError("the pool is not started: use it as `async with procpool.Pool() as pool:`")
            raise PoolClosedError("the pool is closed: submit work before leaving `async with`")
        if threading.get_ident() != self._thread:
            raise RuntimeError(
                "a Pool must be used from the thread running its event loop; from another thread, "
                "use anyio.from_thread.run(pool.run, fn, ...)"
            )

    def _task_done(self, task: Task[Any]) -> None:
        self._outstanding.discard(task)
        self._observer.task_done(task)

    def _submit_pickled(
        self,
        fn_bytes: bytes,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kill_on_cancel: bool,
        stream: StreamLink | None = None,
    ) -> Task[Any]:
        args_bytes = dumps_for_transport((args, kwargs), f"an argument of {name}")
        task_id = next(self._task_ids)
        call = (self._function_ids.id_for(fn_bytes), fn_bytes, args_bytes)
        task: Task[Any] = Task(task_id, f"{name}() [task {task_id}]", call, kill_on_cancel, stream=stream)
        task._withdraw = self._backlog.discard
        self._outstanding.add(task)
        task._add_done_callback(self._task_done)
        self._backlog.put(task)
        return task
