"""Tasks that belong to the event loop rather than to the task that starts them: they host what
must outlive that task, the default pool and the pools opened with ``await pool.open()``.

A backend enters a task group when it opens, and a task group must be left by the task that
entered it. A notebook runs each cell, and ``python -m asyncio`` each statement, in a task of its
own, so a pool entered in one cell could not be closed in the next. A pool opened with
``open()`` is entered instead by a host task of its own, which runs ``async with pool`` until
``aclose`` (from any task) tells it to leave: the pool behaves as in ``async with`` in every way.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from .._core import in_trio

# asyncio keeps only weak references to tasks: the hosts are kept here until they end.
_asyncio_hosts: set[asyncio.Task[None]] = set()
_exit_hook_registered = False


def start_loop_task(fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
    """Run ``fn()`` in a new task of the running event loop that no other task is the parent of.

    Under trio, a system task; under asyncio (uvloop too), a task of the loop. Either way it is
    cancelled when the loop ends: ``asyncio.run`` cancels the tasks left, trio its system tasks
    once the main task returns. ``fn`` must raise nothing but a cancellation: an exception from
    a trio system task ends the whole run.

    Nor does it take the context variables of the task that starts it (trio's system tasks run
    in the context trio started in; an asyncio one here in an empty context): in a notebook, what
    the workers print then goes to the cell that runs when they print it, not to the cell that
    opened the pool (ipykernel finds a cell's output by a context variable).
    """
    if in_trio():
        import trio

        trio.lowlevel.spawn_system_task(fn, name=name)
    else:
        loop = asyncio.get_running_loop()
        task = loop.create_task(_waking_on_signals(loop, fn), name=name, context=contextvars.Context())
        _asyncio_hosts.add(task)
        task.add_done_callback(_asyncio_hosts.discard)
        _register_exit_hook()


def _register_exit_hook() -> None:
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        # Before the interpreter waits for its threads: `atexit` runs after, too late.
        threading._register_atexit(_end_hosts_of_stopped_loops)  # type: ignore[attr-defined]


def _end_hosts_of_stopped_loops() -> None:
    """At exit, end the hosts whose asyncio loop was stopped but never ended (``python -m
    asyncio``, ipykernel), as the end of ``asyncio.run`` would: cancel each and run its loop until
    it is done. Left running, a host would keep its pool's workers, and the threads anyio started
    for it, which the interpreter waits for forever before it exits."""
    for task in list(_asyncio_hosts):
        loop = task.get_loop()
        if task.done() or loop.is_running() or loop.is_closed():
            continue
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)


async def _waking_on_signals(loop: asyncio.AbstractEventLoop, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    wakeup = _SignalWakeup.acquire(loop)
    try:
        await fn()
    finally:
        if wakeup is not None:
            wakeup.release()


class _SignalWakeup:
    """Lets a signal wake an asyncio event loop that runs in the main thread, while hosts run.

    A signal interrupts the loop's wait for IO, its Python handler runs, and the wait resumes
    with the time it had left: a callback the handler schedules waits for the next event or
    timer. That is how ipykernel cancels an interrupted cell, so an interrupt of a cell that
    awaits a pool's task took effect only when the task ended. With a wakeup file descriptor
    (``signal.set_wakeup_fd``) that the loop reads, the wait ends at once. Only installed where
    no wakeup descriptor is set (trio and uvloop set their own, as asyncio does once it handles
    a signal), and removed when the last host of the loop ends.
    """

    _current: _SignalWakeup | None = None

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._users = 0
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)

    @classmethod
    def acquire(cls, loop: asyncio.AbstractEventLoop) -> _SignalWakeup | None:
        """The loop's wakeup, installed now if needed; None where it is not needed or possible."""
        if threading.current_thread() is not threading.main_thread():
            return None  # only the main thread runs signal handlers, and sets the wakeup descriptor
        wakeup = cls._current
        if wakeup is None or wakeup._loop is not loop:
            if wakeup is not None:  # left by a loop that stopped with hosts running
                wakeup._remove()
            wakeup = cls._current = cls(loop)
            if not wakeup._install():
                cls._current = None
                return None
        wakeup._users += 1
        return wakeup

    def release(self) -> None:
        self._users -= 1
        if self._users == 0:
            self._remove()

    def _install(self) -> bool:
        previous = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        if previous != -1:  # someone's own: it wakes the loop already
            signal.set_wakeup_fd(previous, warn_on_full_buffer=False)
            self._close()
            return False
        self._loop.add_reader(self._read.fileno(), self._drain)
        return True

    def _drain(self) -> None:
        while True:
            try:
                if not self._read.recv(4096):
                    return
            except OSError:  # nothing more to read (or closed)
                return

    def _remove(self) -> None:
        if _SignalWakeup._current is self:
            _SignalWakeup._current = None
        if self._read.fileno() == -1:
            return  # removed already
        if not self._loop.is_closed():
            self._loop.remove_reader(self._read.fileno())
        current = signal.set_wakeup_fd(-1)
        if current != self._write.fileno():  # set by someone after us: keep theirs
            signal.set_wakeup_fd(current, warn_on_full_buffer=False)
        self._close()

    def _close(self) -> None:
        self._read.close()
        self._write.close()


class PoolHost:
    """Holds a pool open in a host task (`start_loop_task`) from `open` to `close`, which any
    task of the loop may call."""

    def __init__(self, pool: contextlib.AbstractAsyncContextManager[object]) -> None:
        self._pool = pool  # its ``async with`` is what the host runs
        self._scope = anyio.CancelScope()  # cancelled to abort: leave ``async with`` by a cancellation
        self._opened = anyio.Event()
        self._leave = anyio.Event()
        self._left = anyio.Event()
        self._error: Exception | None = None  # raised by `open` or, if it came later, by `close`

    async def open(self) -> None:
        """Start the host and return once the pool is open.

        Raises:
            Exception: what opening raised (`InitializerError`...); the pool is closed then.
        """
        start_loop_task(self._serve, "procpool pool host")
        await self._wait(self._opened)
        self._raise_error()

    async def close(self) -> None:
        """Leave ``async with`` normally: wait for the submitted tasks, then stop the workers.
        Cancelled meanwhile, cancel the tasks instead (as an exception in ``async with`` would)
        and wait until the workers are stopped. Safe to call more than once."""
        self._leave.set()
        await self._wait(self._left)
        self._raise_error()

    async def _wait(self, event: anyio.Event) -> None:
        try:
            await event.wait()
        except BaseException:
            self._scope.cancel()
            with anyio.CancelScope(shield=True):
                await self._left.wait()  # not long: what runs is killed, after kill_grace at most
            raise

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    async def _serve(self) -> None:
        try:
            with self._scope:
                async with self._pool:
                    self._opened.set()
                    await self._leave.wait()
        except Exception as exc:  # opening failed, or (rarely) a task of the backend did
            self._error = exc
        finally:
            self._opened.set()
            self._left.set()
