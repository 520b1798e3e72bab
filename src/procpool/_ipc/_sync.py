"""Synchronisation between processes: `Lock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`.

Each is built on token pipes (see `_waiting.token_pipe`): a semaphore's value is the number of
bytes in its pipe, ``acquire`` reads one, ``release`` writes one back, and an `Event` is set while
its pipe holds a byte. A pipe's readability is what a waiter waits for, so in async code every wait
is an ``anyio.wait_readable`` on the event loop, and a cancelled wait has taken nothing.

Like multiprocessing's, these primitives are not robust to a process that dies while holding
one: its token is gone with it, and a `Lock` it held stays held. A `Lock` records its holder's
identity (see `_liveness`), so that a wait that must take it back (a `Condition`'s) can tell a
dead holder from a slow one.

A `Condition` needs its waiters' cooperation: ``notify`` hands out wake-up tokens and must wait
until the waiters it means have taken them (else a waiter that arrives later could take one).
A waiter that was killed never takes its token, so the waiters are recorded in a table in shared
memory, one slot each, written only while the condition's lock is held, except for one byte:

- ``wait`` (holding the lock) fills a free slot with its identity and marks it sleeping, releases
  the lock and waits for a token on the wake-up pipe. Woken, timed out or cancelled, it marks its
  slot free (its own byte, a single store, no lock needed), posts a token on the signal pipe,
  and takes the lock back.
- ``notify(n)`` (holding the lock) puts ``min(n, sleeping waiters)`` tokens in the wake-up pipe
  and waits on the signal pipe until they are all taken. Whenever it wakes it counts the sleeping
  slots again: once none is left, the tokens nobody took are taken back, so they cannot reach a
  later waiter. If no signal comes for `CHECK_INTERVAL`, it frees the slots of the waiters that
  died (which therefore never hold a token up for good). Which live waiters take the tokens is
  theirs to race for, as with multiprocessing's ``Condition``: any ``n`` waiters are woken.
- No new waiter can arrive meanwhile (it would need the lock), so a waiter that takes a token
  was sleeping when ``notify`` began.

Nothing waits unbounded on another process: ``notify``'s wait ends when its waiters have taken
their tokens, left, or died, and is cancelled by its caller like any other; taking the lock back
after ``wait`` ends once its holder releases it or is seen dead (`LockHolderDiedError`).
"""

from __future__ import annotations

import contextlib
import struct
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from .._descriptors import shared_memory
from .._errors import ProcpoolError
from ._fdshare import Handles
from ._liveness import (
    CHECK_INTERVAL,
    IDENTITY,
    NOBODY,
    alive,
    map_shared,
    me,
    read_identity,
    write_identity,
)
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

# A live process records itself as a lock's holder the instant after it takes the lock, and clears
# the record the instant before it releases it: a lock that stays taken with no holder recorded
# for this long (seconds) was taken or released by a process killed in between.
_UNRECORDED_GRACE = 0.3


class LockHolderDiedError(ProcpoolError, RuntimeError):
    """A wait had to take a `Lock` back, and the process that holds it died.

    A `Condition`'s ``wait`` ends with the condition's lock held again. If the process that holds
    the lock meanwhile was killed, the lock stays held (a `Lock` outlives its holder, as in
    ``multiprocessing``), so the wait raises this error rather than wait for it forever. A
    cancelled wait re-raises its cancellation instead; either way the lock is not held on exit.

    Attributes:
        pid: the process id of the dead holder; None if it died in the instant it took or released
            the lock, before it could record itself as holder (or after it cleared the record).
    """

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid

    def __str__(self) -> str:
        who = f"process {self.pid}" if self.pid is not None else "a process, unrecorded as holder,"
        return f"{who} died holding the lock: it stays locked and cannot be taken back"


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
        self._read, self._write = handles.fds[:2]
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

    def _acquire(self, deadline: float | None, shield: bool = False) -> Op[bool]:
        taken = yield from take_token_op(self._port, deadline, shield)
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

    ``with lock:`` in synchronous code, ``async with lock:`` under an event loop. A lock held by a
    process that died stays held (``acquire(timeout=...)`` returns False), as in multiprocessing.
    """

    def __init__(self) -> None:
        with contextlib.ExitStack() as undo:  # on failure, closes what was made
            handles = Handles()
            undo.callback(handles.close)
            handles.fds.extend(token_pipe(1, "a lock")[:2])
            handles.fds.append(shared_memory(IDENTITY.size, "procpool-lock"))
            self._setup(handles, 1)
            undo.pop_all()

    def _setup(self, handles: Handles, bound: int) -> None:
        super()._setup(handles, bound)
        self._holder = map_shared(handles.fds[2], IDENTITY.size)  # who holds it (NOBODY if free)

    def _close(self) -> None:
        """Close the lock's descriptors and memory in this process."""
        self._holder.close()
        self._handles.close()

    def locked(self) -> bool:
        """Whether some process holds the lock right now."""
        return self.get_value() == 0

    def _acquire(self, deadline: float | None, shield: bool = False) -> Op[bool]:
        taken = yield from super()._acquire(deadline, shield)
        if taken:
            write_identity(self._holder, 0, me())
        return taken

    def release(self) -> None:
        """Release the lock (never waits; any process may release it).

        Raises:
            ValueError: the lock is not held.
        """
        if self.get_value() >= 1:
            raise ValueError("Lock released too many times")
        write_identity(self._holder, 0, NOBODY)
        super().release()

    def _dead_holder(self) -> int | None:
        """The pid of the lock's holder if that process died, else None (also when not known)."""
        holder = read_identity(self._holder, 0)
        if holder == NOBODY or alive(holder):
            return None
        # Still held by that same process? It may have been released (and taken again) meanwhile.
        if not self.locked() or read_identity(self._holder, 0) != holder:
            return None
        return holder[0]

    def _take_unless_dead(self, shield: bool = False) -> Op[None]:
        """Take the lock, waiting as long as its holder runs.

        Raises:
            LockHolderDiedError: the holder died: the lock stays held.
        """
        unrecorded_since: float | None = None
        while not (yield from self._acquire(time.monotonic() + CHECK_INTERVAL, shield)):
            dead = self._dead_holder()
            if dead is not None:
                raise LockHolderDiedError(dead)
            if not self.locked() or read_identity(self._holder, 0) != NOBODY:
                unrecorded_since = None
            elif unrecorded_since is None:
                unrecorded_since = time.monotonic()
            elif time.monotonic() - unrecorded_since > _UNRECORDED_GRACE:
                raise LockHolderDiedError(None)

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


def _retake(lock: Lock, error: BaseException | None) -> Op[None]:
    """Take ``lock`` back for a `Condition` waiter, then raise ``error`` (a cancellation) if any.

    A cancellation that arrives meanwhile becomes ``error``; from then on the wait is shielded, as
    the lock must be held again before the cancellation goes on. That wait ends when the holder
    releases the lock, or dies: then ``error`` (or `LockHolderDiedError`) is raised without it.
    """
    while True:
        try:
            yield from lock._take_unless_dead(shield=error is not None)
        except LockHolderDiedError:
            if error is not None:
                raise error from None
            raise
        except GeneratorExit:
            raise
        except BaseException as exc:
            if error is not None:
                raise  # a second interruption (a blocking caller's second Ctrl-C): give up the lock
            error = exc
            continue
        break
    if error is not None:
        raise error


_FREE, _SLEEPING = 0, 1
# The waiters' table: the number of slots in use (the highest used + 1), then one slot per waiter:
# a state byte (the only field written without the lock: by the waiter, sleeping -> free) and the
# waiter's identity.
_HEADER = struct.Struct("<q")
_SLOT = struct.Struct("<B7x")
_SLOT_SIZE = _SLOT.size + IDENTITY.size
_MAX_WAITERS = 32768  # the table is a sparse file: its pages exist only once used


class Condition:
    """A condition variable shared by processes, over a `Lock`.

    With the lock held (``with cond:`` / ``async with cond:``), ``wait`` releases it, waits for a
    ``notify``, and takes it back; ``notify`` wakes waiters in any process. ``wait``, ``wait_for``,
    ``notify`` and ``notify_all`` block in synchronous code and are awaitable under an event loop.
    A cancelled ``await cond.wait()`` takes the lock back before the cancellation goes on, as
    asyncio's does. A waiter whose process was killed is skipped by ``notify``; if the process
    holding the lock dies, a ``wait`` raises `LockHolderDiedError` (or its cancellation) without
    the lock, and ``with cond:`` does not release it on exit.

    Args:
        lock: the lock to use (a new `Lock` if None).
    """

    def __init__(self, lock: Lock | None = None) -> None:
        if lock is not None and not isinstance(lock, Lock):
            raise TypeError(f"lock must be a procpool.Lock or None, not {type(lock).__name__}")
        with contextlib.ExitStack() as undo:  # on failure, closes what this made (not ``lock``)
            if lock is None:
                lock = Lock()
                undo.callback(lock._close)
            handles = Handles()
            undo.callback(handles.close)
            for _ in range(2):  # the wake-ups' pipe, then the signals'
                handles.fds.extend(token_pipe(0, "a condition")[:2])
            handles.fds.append(shared_memory(_HEADER.size + _MAX_WAITERS * _SLOT_SIZE, "procpool-condition"))
            self._setup(lock, handles)
            undo.pop_all()

    def _setup(self, lock: Lock, handles: Handles) -> None:
        self._lock = lock
        self._handles = handles
        # wake: the tokens notify hands to sleeping waiters; signal: a waiter's note that its slot
        # changed (woken or gone), for a notify waiting until its tokens are taken.
        self._wake_read, self._wake_write, self._signal_read, self._signal_write, table_fd = handles.fds
        self._wake_port = Port(self._wake_read)
        self._signal_port = Port(self._signal_read)
        self._table = map_shared(table_fd, _HEADER.size + _MAX_WAITERS * _SLOT_SIZE)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_condition, (self._lock, self._handles)

    def _close(self) -> None:
        """Close the descriptors and memory of the condition and its lock in this process."""
        self._table.close()
        self._handles.close()
        self._lock._close()

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
        self._release_if_held()

    async def __aenter__(self) -> bool:
        return await self._lock.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release_if_held()

    def _holds(self) -> bool:
        """Whether this process holds the lock. Asked after a wait: one that could not take the lock
        back (its holder died) leaves no holder in this process, as the dead one still holds it."""
        return self._lock._held_here > 0

    def _release_if_held(self) -> None:
        if self._holds():
            self._lock.release()

    def _check_held(self, what: str) -> None:
        if not self._holds():
            raise RuntimeError(f"{what} needs the condition's lock: call it inside `with cond:` / `async with cond:`")

    def wait(self, timeout: float | None = None) -> Any:
        """Release the lock, wait for a notification, take the lock back.

        Returns:
            True if notified, False if ``timeout`` seconds passed first.

        Raises:
            RuntimeError: this process does not hold the lock.
            LockHolderDiedError: the lock could not be taken back: its holder died.
        """
        self._check_held("wait()")
        return dual(self._wait(deadline_for(True, timeout)))

    def _wait(self, deadline: float | None) -> Op[bool]:
        slot = self._sleep()
        self._lock.release()
        woken = False
        cancelled: BaseException | None = None
        try:
            woken = yield from take_token_op(self._wake_port, deadline)
        except GeneratorExit:
            self._wake(slot)
            raise
        except BaseException as exc:  # cancelled: leave as a timed-out waiter, with the lock held again
            cancelled = exc
        self._wake(slot)
        yield from _retake(self._lock, cancelled)  # then re-raises the cancellation, if any
        return woken

    # -- the waiters' table (see the module docstring) -------------------------------------------

    def _slot_offset(self, slot: int) -> int:
        return _HEADER.size + slot * _SLOT_SIZE

    def _used(self) -> int:
        used: int = _HEADER.unpack_from(self._table)[0]
        return used

    def _sleep(self) -> int:
        """Record this process as a sleeping waiter (with the lock held); its slot."""
        used = self._used()
        table = self._table
        slot = next((i for i in range(used) if table[self._slot_offset(i)] == _FREE), used)
        if slot == _MAX_WAITERS:
            raise RuntimeError(f"a procpool.Condition has at most {_MAX_WAITERS} waiters at once")
        offset = self._slot_offset(slot)
        write_identity(table, offset + _SLOT.size, me())
        table[offset] = _SLEEPING
        if slot == used:
            _HEADER.pack_into(table, 0, used + 1)
        return slot

    def _wake(self, slot: int) -> None:
        """Leave the table (without the lock: the state byte is this waiter's own) and say so."""
        self._table[self._slot_offset(slot)] = _FREE
        give_tokens(self._signal_write)  # wakes a notify that waits; a full pipe is as good

    def _sleeping(self, purge: bool) -> int:
        """How many waiters sleep (with the lock held); with ``purge``, the dead ones are freed first."""
        table = self._table
        used = self._used()
        count = 0
        dead: dict[tuple[int, int], bool] = {}
        for slot in range(used):
            offset = self._slot_offset(slot)
            if table[offset] != _SLEEPING:
                continue
            if purge:
                who = read_identity(table, offset + _SLOT.size)
                if dead.setdefault(who, not alive(who)):
                    table[offset] = _FREE  # its process is dead: nobody else writes this slot
                    continue
            count += 1
        while used and table[self._slot_offset(used - 1)] == _FREE:
            used -= 1
        _HEADER.pack_into(table, 0, used)
        return count

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true (checked at each notification); its last result.

        Raises:
            RuntimeError: this process does not hold the lock.
            LockHolderDiedError: the lock could not be taken back: its holder died.
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
        """Wake up to ``n`` waiters and wait until they have taken their wake-up (they then wait for
        the lock). Waiters that died are skipped. If cancelled, the wake-ups not yet taken are
        taken back: fewer waiters may have been woken.

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
        owed = n  # wake-ups not yet in the pipe
        purge = False
        try:
            while True:
                while take_token(self._signal_read):
                    pass  # before counting: a change after this count posts a token again
                unclaimed = bytes_readable(self._wake_read)
                sleeping = self._sleeping(purge)
                if not sleeping:
                    break
                owed = min(owed, sleeping - unclaimed)
                if owed > 0:
                    given = give_tokens(self._wake_write, owed)  # as many as fit in the pipe
                    owed -= given
                    unclaimed += given
                if not unclaimed and owed <= 0:
                    break
                # No word from any waiter for a while: look whether some died.
                purge = not (yield Wait(self._signal_port, deadline=time.monotonic() + CHECK_INTERVAL))
        finally:
            while take_token(self._wake_read):
                pass  # wake-ups nobody is left to take: a later waiter must not get them


def _rebuild_condition(lock: Lock, handles: Handles) -> Condition:
    rebuilt = Condition.__new__(Condition)
    rebuilt._setup(lock, handles)
    return rebuilt
