"""`Pool`: the public facade over the local engine (`procpool._engine.LocalBackend`)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from .._errors import PoolClosedError
from .._launch import start_forkserver_early
from .._sizing import available_cpus, check_start_method
from ._checks import check_bool, check_buffer_threshold, check_count, check_positive_int, check_seconds
from ._verbs import PoolFacade, PoolOptions

# The engine is imported by `Pool.__init__` once it has started the forkserver, not here.
if TYPE_CHECKING:
    from .._core import EventHook, PoolStats
    from .._engine import LocalBackend
    from ._executor import PoolExecutor

DEFAULT_BUFFER_THRESHOLD = 256 * 1024


class Pool(PoolFacade):
    """A pool of worker processes that async code awaits like any other IO.

    Use it as an async context manager: the workers are started and ready when ``async with``
    returns, and stopped when it exits. Leaving the block normally waits for every submitted task;
    leaving it by an exception cancels them. In a notebook or a REPL, where each cell runs in a
    task of its own, open it with ``pool = await procpool.Pool().open()`` in one cell and close
    it with ``await pool.aclose()`` in another (see `open`).

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
        max_crashes_per_task: a task that kills its worker this many times (with
            ``pool.options(retries=...)``) fails with `PoisonTaskError` rather than being run
            again. A worker that dies while it receives a task, before beginning it (an
            argument too large for its memory), counts a crash against that task too, which
            is sent again, retries or not, until it reaches this limit.
        idle_timeout: seconds a worker may wait for a task before it is stopped, down to
            ``min_workers``; stopped workers are started again when work comes (None: never).
        min_workers: how many workers ``idle_timeout`` keeps running.
        buffer_threshold: bytes from which a buffer in an argument or a result (a numpy array,
            ``bytes``, ``bytearray``, ``memoryview``, anything pickled as a `pickle.PickleBuffer`)
            travels in shared memory rather than in the pickle: numpy arrays and memoryviews
            arrive as views of it, with no copy. At least 64 KiB; None: every buffer goes in the
            pickle. See "Large payloads" in the tuning guide (docs/tuning.md).

    Raises:
        ValueError: an argument is out of range or an unknown start method is named.
        TypeError: ``initializer`` is not callable, ``initargs`` not iterable, or an option has the wrong type.
    """

    _backend: LocalBackend

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
        buffer_threshold: int | None = DEFAULT_BUFFER_THRESHOLD,
    ) -> None:
        check_positive_int("workers", workers, optional=True)
        check_positive_int("max_tasks_per_worker", max_tasks_per_worker, optional=True)
        check_positive_int("max_queued", max_queued, optional=True)
        check_positive_int("max_memory_per_worker", max_memory_per_worker, optional=True)
        check_positive_int("max_crashes_per_task", max_crashes_per_task, optional=False)
        check_seconds("idle_timeout", idle_timeout)
        check_count("min_workers", min_workers)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, not {type(initializer).__name__}")
        if not isinstance(initargs, Iterable) or isinstance(initargs, (str, bytes)):
            raise TypeError(f"initargs must be a tuple (or other iterable) of arguments, not {initargs!r:.80}")
        check_bool("kill_on_cancel", kill_on_cancel)
        if not isinstance(kill_grace, (int, float)) or isinstance(kill_grace, bool) or not kill_grace >= 0:
            raise ValueError(f"kill_grace must be a number of seconds >= 0, not {kill_grace!r}")  # NaN fails >= too
        check_bool("forward_logs", forward_logs)
        check_bool("forward_output", forward_output)
        if on_event is not None and not callable(on_event):
            raise TypeError(f"on_event must be callable or None, not {type(on_event).__name__}")
        start_method = check_start_method(start_method)
        # The forkserver takes longer to start than the engine to import: side by side, they
        # halve a first pool's start.
        start_forkserver_early(start_method)
        from .._core import PoolObserver
        from .._engine import LocalBackend
        from .._transport import MINIMUM_THRESHOLD

        check_buffer_threshold(buffer_threshold, MINIMUM_THRESHOLD)
        self._kill_on_cancel = bool(kill_on_cancel)
        self._executor: PoolExecutor | None = None
        self._backend = LocalBackend(
            workers if workers is not None else available_cpus(),
            start_method=start_method,
            initializer=initializer,
            initargs=initargs,
            max_tasks_per_worker=max_tasks_per_worker,
            kill_grace=float(kill_grace),
            forward_logs=forward_logs,
            forward_output=forward_output,
            observer=PoolObserver(on_event),
            max_queued=max_queued,
            max_memory_per_worker=max_memory_per_worker,
            max_crashes_per_task=max_crashes_per_task,
            idle_timeout=None if idle_timeout is None else float(idle_timeout),
            min_workers=min_workers,
            buffer_threshold=buffer_threshold,
        )
        # A pool dropped unclosed is ended as it is collected (the backend does not refer back
        # to the facade, which the user holds); at the interpreter's exit, `_process` ends them.
        weakref.finalize(self, self._backend.abandoned).atexit = False

    @property
    def workers(self) -> int:
        """How many worker processes the pool runs."""
        return self._backend.workers

    @property
    def start_method(self) -> str:
        """How workers are started: ``"forkserver"`` or ``"spawn"``."""
        return self._backend.start_method

    def __repr__(self) -> str:
        backend = self._backend
        state = "closed (its event loop was closed)" if backend.open_since_loop_closed() else backend.state.value
        return f"<procpool.Pool workers={self.workers} start_method={self.start_method!r} {state}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a procpool.Pool cannot be pickled or sent to a worker: it belongs to the process that "
            "created it; send data to tasks and await the results in the parent"
        )

    @property
    def queued(self) -> int:
        """How many submitted tasks wait to start: in the backlog, or sent ahead to a busy worker."""
        return self._backend.queued

    def stats(self) -> PoolStats:
        """A snapshot of the pool's workers, tasks and times (see `PoolStats`).

        Cheap, and safe to call from any thread (a metrics exporter's, say).
        """
        return self._backend.stats()

    @property
    def executor(self) -> PoolExecutor:
        """A `concurrent.futures.Executor` backed by this pool's workers (see `PoolExecutor`).

        Any thread may submit to it; waiting for its futures is for other threads than the
        event loop's (there it raises `RuntimeError` rather than hang the loop).

        Example: ``await loop.run_in_executor(pool.executor, fn, x)``.

        Raises:
            PoolClosedError: the pool is not started yet.
        """
        if self._executor is None:
            from ._executor import PoolExecutor

            backend = self._backend
            if backend.thread is None or backend.token is None:
                raise PoolClosedError(
                    "the pool is not started: use it as `async with procpool.Pool() as pool:`, "
                    "or open it with `pool = await procpool.Pool().open()`"
                )
            self._executor = PoolExecutor(self, backend.token, backend.thread)
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
            check_bool("kill_on_cancel", kill_on_cancel)
        return PoolOptions(
            self._backend,
            kill_on_cancel=self._kill_on_cancel if kill_on_cancel is None else bool(kill_on_cancel),
            timeout=timeout,
            retries=retries,
        )
