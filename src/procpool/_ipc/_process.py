"""`Process`: one child process running a target, started and joined without blocking the loop.

The target travels with cloudpickle (lambdas, closures; the main script's top-level functions by
name), pickled while multiprocessing starts the child, so the procpool Queues, Pipes and locks
among its arguments are inherited by it. Like the pool's workers, the child holds a lifeline to
its owner and dies with it.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, NoReturn

import anyio

from .._child import arm_lifeline, call
from .._engine import poll_exitcode, start_in_thread
from .._errors import InvalidStateError
from .._launch import worker_context
from .._sizing import check_start_method
from .._transport import dumps_for_transport
from ._waiting import Port, running_async

_EXIT_POLL_INTERVAL = 0.002


class _Call:
    """The target and its arguments, cloudpickled when multiprocessing pickles the process.

    Pickling then, rather than before, means the procpool objects among the arguments are pickled
    while the child is being started, so their descriptors are handed over with the start.
    """

    def __init__(self, target: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.call = (target, args, kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        name = getattr(self.call[0], "__qualname__", repr(self.call[0]))
        return pickle.loads, (dumps_for_transport(self.call, f"the target {name} or its arguments"),)


def _child_main(call_: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]], lifeline: socket.socket) -> None:
    """Entry point of the child: arm the lifeline, then run the target (on a loop if it is async)."""
    arm_lifeline(lifeline)
    call(*call_)


class Process:
    """A child process that runs ``target(*args, **kwargs)``, with an async face.

    ``await p.start()`` and ``await p.join()`` never block the event loop. Used as
    ``async with procpool.Process(...) as p:``, the process is started on entry and joined on exit,
    or terminated (then killed) if the block exits by an exception or a cancellation.

    Args:
        target: the function to run; any callable cloudpickle can carry, or an ``async def``
            function, which the child runs on its own event loop.
        args: positional arguments for ``target`` (procpool Queues, Pipes, locks... included).
        kwargs: keyword arguments for ``target``.
        name: the process name (default: multiprocessing's ``"Process-N"``).
        daemon: the multiprocessing daemon flag (None: inherited from this process).
        start_method: ``"forkserver"`` (the default on Linux) or ``"spawn"``.
        kill_grace: seconds a terminated child gets before SIGKILL when ``async with`` stops it.

    Raises:
        TypeError: ``target`` is not callable, ``args`` is not iterable or ``kwargs`` not a mapping.
        ValueError: an unknown or unsupported start method, or a negative ``kill_grace``.
    """

    def __init__(
        self,
        target: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        daemon: bool | None = None,
        start_method: str | None = None,
        kill_grace: float = 0.5,
    ) -> None:
        if not callable(target):
            raise TypeError(f"target must be callable, not {type(target).__name__}: {target!r:.80}")
        if not isinstance(kill_grace, (int, float)) or kill_grace < 0:
            raise ValueError(f"kill_grace must be a number of seconds >= 0, not {kill_grace!r}")
        self._start_method = check_start_method(start_method)
        if not isinstance(args, Iterable) or isinstance(args, (str, bytes)):
            raise TypeError(f"args must be a tuple (or other iterable) of arguments, not {args!r:.80}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"kwargs must be a mapping of keyword arguments or None, not {kwargs!r:.80}")
        self._call = _Call(target, tuple(args), dict(kwargs or {}))
        self._name = name
        self._daemon = daemon
        self._kill_grace = kill_grace
        self._process: BaseProcess | None = None
        self._lifeline: socket.socket | None = None
        self._sentinel: Port | None = None
        self._pid: int | None = None
        self._exitcode: int | None = None

    def __repr__(self) -> str:
        state = "initial" if self._process is None else "alive" if self.is_alive() else f"exitcode={self._exitcode}"
        return f"<procpool.Process name={self.name!r} pid={self._pid} {state}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a procpool.Process cannot be pickled: it belongs to the process that started it")

    @property
    def name(self) -> str | None:
        """The process name (multiprocessing's default name once started, if none was given)."""
        return self._name

    @property
    def pid(self) -> int | None:
        """The child's process id, or None before `start`."""
        return self._pid

    @property
    def exitcode(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while running or before `start`."""
        self._poll_exit()
        return self._exitcode

    def is_alive(self) -> bool:
        """Whether the child has been started and has not exited yet."""
        return self._process is not None and self._poll_exit() is None

    async def start(self) -> None:
        """Start the child; returns once it exists (its target may not have begun yet).

        Raises:
            InvalidStateError: the process was already started.
            SerializationError: the target or an argument cannot be pickled.
        """
        if self._process is not None:
            raise InvalidStateError("a procpool.Process can be started only once; create a new one")
        context = worker_context(self._start_method)
        parent_lifeline, child_lifeline = socket.socketpair()
        try:
            process: BaseProcess = context.Process(  # type: ignore[attr-defined]
                target=_child_main, args=(self._call, child_lifeline), name=self._name, daemon=self._daemon
            )
            await start_in_thread(process, child_lifeline)
        except BaseException:
            parent_lifeline.close()
            raise
        finally:
            child_lifeline.close()
        self._process = process
        self._lifeline = parent_lifeline
        self._sentinel = Port(process.sentinel)
        self._pid = process.pid
        self._name = process.name

    async def join(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (multiprocessing's signature)
        """Wait until the child exits, or ``timeout`` seconds (then check `exitcode`).

        Waits on the process sentinel's readability: no thread, the loop never blocks.

        Raises:
            InvalidStateError: the process was not started.
        """
        if self._process is None or self._sentinel is None:
            raise InvalidStateError("join() before start(): await p.start() first")
        sentinel = self._sentinel
        with anyio.move_on_after(timeout):
            while self._poll_exit() is None:
                try:
                    async with sentinel.lock(write=False):
                        if self._exitcode is None:
                            await anyio.wait_readable(sentinel.fd)
                except anyio.ClosedResourceError:
                    continue  # another task saw the exit and released the process
                if self._poll_exit() is None:
                    # Readable, but the exit status is not read yet (or another thread holds the
                    # lock around it); look again shortly.
                    await anyio.sleep(_EXIT_POLL_INTERVAL)

    def terminate(self) -> None:
        """Send SIGTERM to the child (nothing if it has exited)."""
        self._signal(kill=False)

    def kill(self) -> None:
        """Send SIGKILL to the child (nothing if it has exited)."""
        self._signal(kill=True)

    def _signal(self, *, kill: bool) -> None:
        if self._process is None:
            raise InvalidStateError("the process was not started")
        if self._poll_exit() is None:
            if kill:
                self._process.kill()
            else:
                self._process.terminate()

    def _poll_exit(self) -> int | None:
        """The exit code if the child has exited (reading it never waits), else None."""
        process = self._process
        if self._exitcode is None and process is not None:
            code = poll_exitcode(process)
            if code is not None:
                self._exitcode = code
                self._release()
        return self._exitcode

    def _release(self) -> None:
        assert self._process is not None
        assert self._lifeline is not None
        assert self._sentinel is not None
        if running_async():
            anyio.notify_closing(self._sentinel.fd)  # a task waiting on it in join() wakes up
        self._lifeline.close()
        self._process.close()

    async def stop(self) -> None:
        """Terminate the child, kill it if it is still alive after ``kill_grace``, and wait for it."""
        with anyio.CancelScope(shield=True):
            self.terminate()
            await self.join(self._kill_grace)
            if self._exitcode is None:
                self.kill()
                await self.join()

    async def __aenter__(self) -> Process:
        if self._process is None:
            await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            await self.stop()
            return
        try:
            await self.join()
        except BaseException:  # cancelled while waiting for a child that is still running
            await self.stop()
            raise
