"""Synchronisation between processes: `Lock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`.

Each is built on token pipes (see `_waiting.token_pipe`): a semaphore's value is the number of
bytes in its pipe, ``acquire`` reads one, ``release`` writes one back, and an `Event` is set while
its pipe holds a byte. A pipe's readability is what a waiter waits for, so in async code every wait
is an ``anyio.wait_readable`` on the event loop, and a cancelled wait has taken nothing.

Like multiprocessing's, these primitives are not robust to a process that dies while holding
one: its token is gone with it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from ._fdshare import Handles
from ._waiting import (
    Op,
    Port,
    Wait,
    bytes_readable,
    check_sync,
    deadline_for,
    dual,
    give_tokens,
    run_async,
    run_blocking,
    take_token,
    take_token_op,
    token_pipe,
)

T = TypeVar("T")
S = TypeVar("S", bound="Semaphore")


def _check_value(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"a semaphore's value must be an integer >= 0, not {value!r}")
    return value


class Semaphore:
    """A counter shared by processes: ``acquire`` takes one unit, waiting while there is none.

    Blocking in synchronous code (``with sem:``); awaitable under an event loop
    (``async with sem:``, ``await sem.acquire()``).

    Args:
        value: the initial count.

    Raises:
        ValueError: ``value`` is negative or larger than this system allows.
    """

    _bounded = False

    def __init__(self, value: int = 1) -> None:
        read_fd, write_fd, _ = token_pipe(_check_value(value), "a semaphore's value")
        self._setup(Handles(fds=[read_fd, write_fd]), value)

    def _setup(self, handles: Handles, bound: int) -> None:
        self._handles = handles
        self._read, self._write = handles.fds
        self._port = Port(self._read)
        self._bound = bound
        self._held_here = 0  # acquisitions by this process not yet released (for Condition's checks)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self._handles, self._bound)

    def __repr__(self) -> str:
        return f"<procpool.{type(self).__name__} value={self.get_value()}>"

    def get_value(self) -> int:
        """The current count (approximate: other processes may change it meanwhile)."""
        return bytes_readable(self._read)

    def acquire(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take one unit; True once taken, False if ``block`` is false or ``timeout`` passed first.

        An awaitable under an event loop; a cancelled await took nothing.
        """
        return dual(self._acquire(deadline_for(block, timeout)))

    def _acquire(self, deadline: float | None) -> Op[bool]:
        taken = yield from take_token_op(self._port, deadline)
        if taken:
            self._held_here += 1
        return taken

    def release(self) -> None:
        """Give one unit back (never waits, in sync and async code alike).

        Raises:
            ValueError: a bounded semaphore (or a lock) was released more often than acquired.
        """
        if self._bounded and bytes_readable(self._read) >= self._bound:
            raise ValueError(f"{type(self).__name__} released too many times")
        if not give_tokens(self._write):
            raise ValueError(f"{type(self).__name__} released too many times: its count is at the system's limit")
        self._held_here = max(0, self._held_here - 1)

    def __enter__(self) -> bool:
        check_sync(f"`with {type(self).__name__.lower()}:`")
        return run_blocking(self._acquire(None))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    async def __aenter__(self) -> bool:
        return await run_async(self._acquire(None))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """A `Semaphore` whose ``release`` raises `ValueError` if the count would exceed its initial value."""

    _bounded = True


class Lock(BoundedSemaphore):
    """A lock shared by processes (a bounded semaphore of one); any process may release it.

    ``with lock:`` in synchronous code, ``async with lock:`` under an event loop.
    """

    def __init__(self) -> None:
        super().__init__(1)

    def locked(self) -> bool:
        """Whether some process holds the lock right now."""
        return self.get_value() == 0

    def __repr__(self) -> str:
        return f"<procpool.Lock {'locked' if self.locked() else 'unlocked'}>"


def _rebuild(cls: type[S], handles: Handles, bound: int) -> S:
    rebuilt = cls.__new__(cls)
    rebuilt._setup(handles, bound)
    return rebuilt


class Event:
    """A flag shared by processes; ``wait`` returns once it is set.

    ``set``, ``clear`` and ``is_set`` never wait; ``wait`` blocks in synchronous code and is
    awaitable under an event loop.
    """

    def __init__(self) -> None:
        read_fd, write_fd, _ = token_pipe(0, "an event")
        self._setup(Handles(fds=[read_fd, write_fd]))

    def _setup(self, handles: Handles) -> None:
        self._handles = handles
        self._read, self._write = handles.fds
        self._port = Port(self._read)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_event, (self._handles,)

    def __repr__(self) -> str:
        return f"<procpool.Event {'set' if self.is_set() else 'unset'}>"

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return bytes_readable(self._read) > 0

    def set(self) -> None:
        """Set the flag, waking every waiter in every process."""
        if not self.is_set():
            give_tokens(self._write)  # stays in the pipe: readable, hence set, until cleared

    def clear(self) -> None:
        """Reset the flag."""
        while take_token(self._read):
            pass

    def wait(self, timeout: float | None = None) -> Any:
        """Wait until the flag is set; True, or False if ``timeout`` seconds passed first.

        An awaitable under an event loop.
        """
        return dual(self._wait(deadline_for(True, timeout)))

    def _wait(self, deadline: float | None) -> Op[bool]:
        while not self.is_set():
            if not (yield Wait(self._port, deadline=deadline)):
                return self.is_set()
        return True


def _rebuild_event(handles: Handles) -> Event:
    rebuilt = Event.__new__(Event)
    rebuilt._setup(handles)
    return rebuilt


def _reacquire(lock: Lock) -> Op[BaseException | None]:
    """Take ``lock`` back whatever happens meanwhile; the exception (a cancellation) that arrived.

    After the first exception the async driver runs the remaining waits shielded.
    """
    error: BaseException | None = None
    while True:
        try:
            yield from lock._acquire(None)
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            continue
        return error


class Condition:
    """A condition variable shared by processes, over a `Lock`.

    With the lock held (``with cond:`` / ``async with cond:``), ``wait`` releases it, waits for a
    ``notify``, and takes it back; ``notify`` wakes waiters in any process. ``wait``, ``wait_for``,
    ``notify`` and ``notify_all`` block in synchronous code and are awaitable under an event loop.
    A cancelled ``await cond.wait()`` takes the lock back before the cancellation goes on, as
    asyncio's does.

    Args:
        lock: the lock to use (a new `Lock` if None).
    """

    def __init__(self, lock: Lock | None = None) -> None:
        if lock is not None and not isinstance(lock, Lock):
            raise TypeError(f"lock must be a procpool.Lock or None, not {type(lock).__name__}")
        with contextlib.ExitStack() as undo:  # on failure, closes what this made (not ``lock``)
            if lock is None:
                lock = Lock()
                undo.callback(lock._handles.close)
            semaphores = []
            for _ in range(3):
                semaphores.append(Semaphore(0))
                undo.callback(semaphores[-1]._handles.close)
            self._setup(lock, *semaphores)
            undo.pop_all()

    def _setup(self, lock: Lock, sleepers: Semaphore, wakeups: Semaphore, done: Semaphore) -> None:
        self._lock = lock
        # sleepers: waiters that went to sleep; wakeups: tokens that notify hands them;
        # done: one per waiter that stopped waiting (woken or timed out), so notify can wait for the
        # ones it woke and account for the ones that left on their own.
        self._sleepers = sleepers
        self._wakeups = wakeups
        self._done = done

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_condition, (self._lock, self._sleepers, self._wakeups, self._done)

    def _close(self) -> None:
        """Close the descriptors of the lock and the semaphores in this process."""
        for part in (self._lock, self._sleepers, self._wakeups, self._done):
            part._handles.close()

    def __repr__(self) -> str:
        return f"<procpool.Condition {self._lock!r}>"

    def acquire(self, block: bool = True, timeout: float | None = None) -> Any:
        """Acquire the underlying lock (see `Lock.acquire`)."""
        return self._lock.acquire(block, timeout)

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()

    async def __aenter__(self) -> bool:
        return await self._lock.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()

    def _check_held(self, what: str) -> None:
        if self._lock._held_here <= 0:
            raise RuntimeError(f"{what} needs the condition's lock: call it inside `with cond:` / `async with cond:`")

    def wait(self, timeout: float | None = None) -> Any:
        """Release the lock, wait for a notification, take the lock back.

        Returns:
            True if notified, False if ``timeout`` seconds passed first.

        Raises:
            RuntimeError: this process does not hold the lock.
        """
        self._check_held("wait()")
        return dual(self._wait(deadline_for(True, timeout)))

    def _wait(self, deadline: float | None) -> Op[bool]:
        self._sleepers.release()
        self._lock.release()
        try:
            woken = yield from take_token_op(self._wakeups._port, deadline)
        except GeneratorExit:
            self._done.release()
            raise
        except BaseException:  # cancelled: leave as a timed-out waiter, with the lock held again
            self._done.release()
            yield from _reacquire(self._lock)
            raise
        self._done.release()
        error = yield from _reacquire(self._lock)
        if error is not None:
            raise error
        return woken

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true (checked at each notification); its last result.

        Raises:
            RuntimeError: this process does not hold the lock.
        """
        self._check_held("wait_for()")
        return dual(self._wait_for(predicate, deadline_for(True, timeout)))

    def _wait_for(self, predicate: Callable[[], T], deadline: float | None) -> Op[T]:
        result = predicate()
        while not result:
            if not (yield from self._wait(deadline)):
                return predicate()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> Any:
        """Wake up to ``n`` waiters and wait until they have left ``wait`` (they then wait for the lock).

        Raises:
            RuntimeError: this process does not hold the lock.
        """
        self._check_held("notify()")
        return dual(self._notify(n))

    def notify_all(self) -> Any:
        """Wake every waiter (see `notify`)."""
        self._check_held("notify_all()")
        return dual(self._notify(sys.maxsize))

    def _notify(self, n: int) -> Op[None]:
        # Waiters that stopped on their own (timeout, cancellation) are sleepers no more.
        while take_token(self._done._read):
            take_token(self._sleepers._read)
        woken = 0
        while woken < n and take_token(self._sleepers._read):
            give_tokens(self._wakeups._write)
            woken += 1
        # Each woken waiter reports back (quickly: it only waits for the lock, which we hold).
        # Waiting for all of them, even if cancelled meanwhile, keeps the counts consistent.
        error: BaseException | None = None
        while woken:
            try:
                yield from take_token_op(self._done._port, None)
            except GeneratorExit:
                raise
            except BaseException as exc:
                error = exc
                continue
            woken -= 1
        while take_token(self._wakeups._read):
            pass  # wake-ups whose waiter timed out first: withdraw them
        if error is not None:
            raise error


def _rebuild_condition(lock: Lock, sleepers: Semaphore, wakeups: Semaphore, done: Semaphore) -> Condition:
    rebuilt = Condition.__new__(Condition)
    rebuilt._setup(lock, sleepers, wakeups, done)
    return rebuilt
