"""The verbs (``submit``, ``run``, ``stream``, ``map``, ``starmap``), written once against the
`Backend` boundary, and the facade every pool shares (``async with``, ``open``, ``aclose``, ``options`` views).

`Pool`, `DaskPool` and `InlinePool` are each this facade over a backend of their own.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Sequence, Sized
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._checks import check_bool, check_callable, check_count, check_positive_int, check_seconds, describe
from ._chunking import ChunkSizer
from ._progress import ProgressOption, open_progress

# The engine side (anyio, the core, the transport) is imported by the methods that use it, not
# here: `Pool(...)` starts the forkserver before it imports the engine (see `procpool._launch`).
if TYPE_CHECKING:
    from .._core import Backend, CancelCheck, Job, StreamLink, Task
    from .._transport import Spilled
    from ._host import PoolHost
    from ._map import MapIterator
    from ._stream import StreamIterator

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound="PoolFacade")


class Verbs:
    """The ways to send work to a pool; shared by every pool and the views from ``options``."""

    _backend: Backend
    _kill_on_cancel: bool
    _timeout: float | None = None  # seconds from the call, queue time included (`Pool.options`)
    _retries = 0  # re-runs of a task whose worker died under it (`Pool.options`)
    _cancel_check: CancelCheck | None = None  # `run`'s, found at its first call
    # The function called last, prepared, when it travels by name: calls in a row to one
    # function skip its name and its pickle's lookup.
    _last_function: tuple[Callable[..., Any], _Prepared] | None = None

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
        return self._submit(fn, args, kwargs)

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        stream: StreamLink | None = None,
        start_gate: Callable[[], bool] | None = None,
    ) -> Task[Any]:
        return self._submit_pickled(self._prepare(fn), args, kwargs, stream=stream, start_gate=start_gate)

    def _submit_pickled(
        self,
        prepared: _Prepared,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        called_at: float | None = None,
        *,
        stream: StreamLink | None = None,
        start_gate: Callable[[], bool] | None = None,
    ) -> Task[Any]:
        """Make the call's job and hand it to the backend, with this view's options; a timeout
        counts from ``called_at`` (``anyio.current_time()``; default: now). Returns its handle,
        taken before the backend has the job: a backend may settle it at once."""
        job_type, dumps_call_for_transport = _call_packing()
        fn_bytes, name, what_arguments = prepared
        backend = self._backend
        room = backend.admission
        if room is not None:
            room.enter()
        args_bytes, buffers = dumps_call_for_transport(
            args, kwargs, what_arguments, backend.memory_files, backend.workers_import_main
        )
        job_id = backend.new_job_id()
        job = job_type(
            job_id,
            name,
            fn_bytes,
            args_bytes,
            buffers,
            kill_on_cancel=self._kill_on_cancel,
            stream=stream,
        )
        job.retries = self._retries
        job.start_gate = start_gate
        task = job.task
        assert task is not None  # just made: nothing has settled it yet
        if self._timeout is not None:
            import anyio

            start = anyio.current_time() if called_at is None else called_at
            backend.set_deadline(job, start + self._timeout, self._timeout)
        backend.submit(job)
        return task

    def _prepare(self, fn: Callable[..., Any]) -> _Prepared:
        """Check a call can be submitted; the pickled function and how messages name it."""
        self._backend.check_open()
        last = self._last_function
        if last is not None and last[0] is fn:
            return last[1]
        check_callable(fn)
        from .._transport import dumps_for_transport, dumps_function, pickled_by_reference

        name = describe(fn)
        main_by_reference = self._backend.workers_import_main
        fn_bytes = dumps_for_transport(fn, f"the function {name}", dumps_function, main_by_reference=main_by_reference)
        prepared = _Prepared(fn_bytes, name)
        if pickled_by_reference(fn, fn_bytes):  # by value, it is pickled again at each call
            self._last_function = (fn, prepared)
        return prepared

    async def _wait_for_room(self) -> None:
        """Wait until a pool with ``max_queued`` has room (for at most the call's ``timeout``)."""
        room = self._backend.admission
        if room is None:
            return
        if self._timeout is None:
            await room.wait()
        else:
            import anyio

            with anyio.fail_after(self._timeout):
                await room.wait()
        self._backend.check_open()  # it may have closed (or broken) while this call waited

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
        prepared = self._prepare(fn)
        # A call made in a cancelled scope must never begin: submitting wakes an idle worker,
        # which could send the task before this call's first wait sees the cancellation.
        check = self._cancel_check
        if check is None:  # an open pool stays in its event loop: the lookup holds for good
            from .._core import cancel_check

            check = self._cancel_check = cancel_check(self._backend.loop)
        if check.may_be_cancelled():
            await check.checkpoint()
        # The clock is read only when a timeout needs it: a tiny task's call is worth saving for.
        called_at = None
        if self._timeout is not None:
            import anyio

            called_at = anyio.current_time()
        if self._backend.admission is not None:
            await self._wait_for_room()
        return await self._submit_pickled(prepared, args, kwargs, called_at)

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
        from .._core import StreamLink
        from ._stream import StreamIterator

        if self._retries:
            raise ValueError("retries does not apply to pool.stream(): a re-run would send its items again")
        link = StreamLink()
        return StreamIterator(self._submit(fn, args, kwargs, stream=link), link, self._backend.kill_grace)

    @overload
    def map(
        self,
        fn: Callable[..., Coroutine[Any, Any, R]],
        /,
        *iterables: Iterable[Any] | AsyncIterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
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
        chunksize: int | None = None,
        max_in_flight: int | None = None,
        progress: ProgressOption = False,
    ) -> MapIterator[R]: ...
    def map(
        self,
        fn: Callable[..., Any],
        /,
        *iterables: Iterable[Any] | AsyncIterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        max_in_flight: int | None = None,
        progress: ProgressOption = False,
    ) -> MapIterator[Any]:
        """``fn`` applied to the items of ``iterables`` (like builtin ``map``), as an async iterator;
        await it instead to collect the results into a list.

        Args:
            fn: the function; called as ``fn(a, b, ...)`` with one item from each iterable.
            iterables: sync or async iterables, possibly endless; the shortest ends the map.
            ordered: yield results in input order (True) or as they complete (False).
            chunksize: items sent to a worker in one task. Left out, the pool chooses: one item per
                task until a chunk has come back, then as many as keep a worker busy for about
                10 ms (measured as the map runs), never more than a share of what is left to
                each worker. Give it to fix the size.
            max_in_flight: chunks submitted ahead of the consumer (default: twice the workers,
                up to eight times while chunks take under 2 ms each); inputs are pulled only as
                fast as results are consumed.
            progress: show a progress bar on stderr: True picks tqdm on a terminal when it is
                installed (``procpool[progress]``), plain text otherwise; ``"tqdm"`` or ``"text"``
                force one; a callable is called as ``callback(done, total)`` as results come in
                (``total`` is None when the iterables have no length).

        Raises:
            SerializationError: ``fn`` cannot be pickled (at the call); an item cannot be (from
                the iteration or the await, when its chunk is sent: nothing is sent before).
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
        chunksize: int | None = None,
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
        chunksize: int | None = None,
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
        chunksize: int | None = None,
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
        chunksize: int | None,
        max_in_flight: int | None,
        progress: ProgressOption,
    ) -> MapIterator[Any]:
        from .._child import ChunkRunner
        from .._transport import dumps_for_transport
        from ._map import MapIterator

        check_callable(fn)
        for iterable in iterables:
            if not isinstance(iterable, (Iterable, AsyncIterable)):
                raise TypeError(f"expected iterables or async iterables, not {type(iterable).__name__}")
        check_bool("ordered", ordered)
        check_positive_int("chunksize", chunksize, optional=True)
        check_positive_int("max_in_flight", max_in_flight, optional=True)
        backend = self._backend
        backend.check_open()
        name = describe(fn)
        spread = star or len(iterables) > 1
        runner = _Prepared(
            dumps_for_transport(
                ChunkRunner(fn, spread=spread), f"the function {name}", main_by_reference=backend.workers_import_main
            ),
            name,
        )

        def submit_chunk(chunk: Sequence[Any]) -> Task[list[Any]]:
            task: Task[list[Any]] = self._submit_pickled(runner, (chunk,), {})
            return task

        sized = all(isinstance(iterable, Sized) for iterable in iterables)
        total = min(len(iterable) for iterable in iterables) if sized else None  # type: ignore[arg-type]
        return MapIterator(
            submit_chunk,
            iterables,
            star=star,
            spread=spread,
            ordered=ordered,
            sizer=ChunkSizer(chunksize, workers=backend.workers, total=total),
            max_in_flight=max_in_flight,
            progress=open_progress(progress, total, name),
            wait_for_room=self._wait_for_room if backend.admission is not None else None,
        )


class PoolOptions(Verbs):
    """A view of a pool whose ``run``/``submit``/``stream``/``map`` use other per-call options."""

    def __init__(
        self, backend: Backend, *, kill_on_cancel: bool, timeout: float | None = None, retries: int = 0
    ) -> None:
        check_seconds("timeout", timeout)
        check_count("retries", retries)
        self._backend = backend
        self._kill_on_cancel = kill_on_cancel
        self._timeout = None if timeout is None else float(timeout)
        self._retries = retries


class PoolFacade(Verbs):
    """How every pool is opened and closed (`Pool`, `DaskPool`, `InlinePool`): over its backend.

    A normal exit from ``async with`` waits for the submitted tasks (`aclose`); an exit by an
    exception, or a cancellation while waiting, cancels everything (the backend's ``abort``) and
    lets the exception go on unchanged, never wrapped in an ExceptionGroup.

    Opened only once: entered with ``async with`` (and left in the task that entered it), or
    with `open` and closed with `aclose`, from any task of its event loop.
    """

    _host: PoolHost | None = None  # set by `open`

    async def open(self: F) -> F:
        """Open the pool for use from any task of this event loop until ``await pool.aclose()``;
        for notebooks and REPLs, where each cell or statement runs in a task of its own.

        The workers are started and ready when it returns, as on entering ``async with``, which
        it is the same as in every other way: `aclose` is the normal exit, and a cancelled
        ``aclose``, or the event loop ending first, the exit by an exception. Returns the pool.

        Example: ``pool = await procpool.Pool(2).open()``, and later ``await pool.aclose()``.

        Raises:
            RuntimeError: the pool was opened already (a pool opens once).
        """
        from .._core import PoolState
        from ._host import PoolHost

        if self._host is not None or self._backend.state is not PoolState.NEW:
            raise RuntimeError(
                f"this {type(self).__name__} was opened already: a pool opens once, with `await pool.open()` "
                "or `async with`; create a new one"
            )
        self._host = host = PoolHost(self)
        await host.open()
        return self

    async def __aenter__(self: F) -> F:
        await self._backend.open()
        return self

    async def aclose(self) -> None:
        """Close the pool: refuse new tasks, wait for the submitted ones, stop the workers.

        Cancelled while it waits, it cancels the tasks instead (killing the workers that run
        them). Safe to call more than once; ``async with`` calls it on a normal exit.
        """
        if self._host is not None:
            await self._host.close()
        else:
            await self._backend.close()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        abort = exc is not None
        if not abort:
            try:
                await self._backend.close()
            except BaseException:  # cancelled while waiting for the tasks
                await self._backend.exit(abort=True)
                raise
        await self._backend.exit(abort=abort)

    @property
    def queued(self) -> int:
        """How many submitted tasks wait to start."""
        return self._backend.queued


class _Prepared(tuple[bytes, str, str]):
    """A function ready to be called in workers: its pickle, its name, and how an error names its
    arguments (made once per function, not per call). A plain tuple: unpacked on each call."""

    __slots__ = ()

    def __new__(cls, fn_bytes: bytes, name: str) -> _Prepared:
        return super().__new__(cls, (fn_bytes, name, f"an argument of {name}"))


@functools.cache
def _call_packing() -> tuple[type[Job], Callable[..., tuple[bytes, Spilled | None]]]:
    """What packs a call into a job, imported on the first call (a lookup, where an import
    statement in `Verbs._submit_pickled` would cost each call about a microsecond)."""
    from .._core import Job
    from .._transport import dumps_call_for_transport

    return Job, dumps_call_for_transport
