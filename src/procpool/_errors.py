"""The exceptions procpool raises. Import-light: the worker imports this module too."""

from __future__ import annotations


class ProcpoolError(Exception):
    """Base class of every error that procpool itself raises."""


class PoolClosedError(ProcpoolError, RuntimeError):
    """Work was submitted to a pool that is closing or closed."""


class SerializationError(ProcpoolError, TypeError):
    """A function, an argument or a result could not be pickled to cross between processes."""


class PoolFullError(ProcpoolError):
    """The pool already holds ``max_queued`` tasks waiting to start, and the call could not wait.

    Raised by ``Pool.submit``, ``Pool.stream`` and ``pool.executor.submit`` on a pool created with
    ``max_queued``; ``await pool.run(...)`` and ``pool.map`` wait for room instead.
    """


class InitializerError(ProcpoolError):
    """A worker's ``initializer`` raised; the child's exception is chained as ``__cause__``.

    At pool start it is raised by ``async with``. If it raises later, in a worker that replaces
    one (a recycle or a crash), the pool is broken: the tasks still waiting and every new call
    fail at once with this error, the same cause chained.
    """


class InvalidStateError(ProcpoolError, RuntimeError):
    """A task's outcome was asked for before the task was done."""


class TaskCancelledError(ProcpoolError):
    """The task was cancelled (``Task.cancel()``) before it produced a result."""


class WorkerCrashedError(ProcpoolError):
    """The worker process died while running the task.

    Only the task that was running fails; the pool starts a replacement worker.

    Attributes:
        pid: the worker's process id.
        exitcode: the exit status (negative when a signal ended the process), or None.
        signal_name: the name of the signal that killed it (``"SIGKILL"``), or None.
        task: a short description of the task that was running.
    """

    def __init__(self, *, pid: int | None, exitcode: int | None, signal_name: str | None, task: str) -> None:
        if signal_name:
            how = f"was killed by {signal_name}"
        elif exitcode is not None:
            how = f"exited with code {exitcode}"
        else:
            how = "was lost"
        who = f"worker process {pid}" if pid is not None else "a worker process"
        super().__init__(f"{who} {how} while running {task}")
        self.pid = pid
        self.exitcode = exitcode
        self.signal_name = signal_name
        self.task = task


class PoisonTaskError(WorkerCrashedError):
    """The same task killed its worker ``max_crashes_per_task`` times in a row, so it is not run again.

    A subclass of `WorkerCrashedError`: code that handles crashes handles it too.

    Attributes:
        crashes: how many workers the task killed.
    """

    def __init__(
        self, *, pid: int | None, exitcode: int | None, signal_name: str | None, task: str, crashes: int
    ) -> None:
        super().__init__(pid=pid, exitcode=exitcode, signal_name=signal_name, task=task)
        self.crashes = crashes
        self.args = (f"{task} killed its worker {crashes} times in a row; it is not run again (last: {self.args[0]})",)


class RemoteError(ProcpoolError):
    """An exception raised in a worker that could not be rebuilt in the parent as its own type.

    Attributes:
        type_name: the qualified name of the original exception type.
        message: ``str()`` of the original exception.
        traceback_text: the child's formatted traceback.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text


class RemoteTraceback(Exception):
    """Carries the child's formatted traceback; set as ``__cause__`` of a re-raised child exception."""

    def __init__(self, traceback_text: str) -> None:
        super().__init__(traceback_text)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return f"\n\n[traceback in the worker process]\n{self.traceback_text}"
