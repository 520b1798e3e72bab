"""`Barrier`: ``parties`` processes (or tasks) wait until all have arrived, then all go on.

The algorithm is the one of ``threading.Barrier`` (a cycle fills, then drains; a timeout, a
cancellation or ``abort()`` breaks it), run over a procpool `Condition`, with its two counters in a
small shared memory file so that every process sees them.

A party can be killed anywhere in ``wait``: it then never arrives, never leaves, and never
releases the condition's lock if it held it. So the shared memory also records the parties of the
current cycle (their identities, see `_liveness`, by arrival index), and no party waits for a dead
one:

- the last party to arrive checks that the others still run before it releases them; if one died,
  it breaks the barrier instead;
- a party waiting to be released wakes every `_TICK` seconds and looks at the next party (in
  arrival order, round the cycle): if that one died, the barrier is broken for everyone. While any
  party waits, some live one thus watches each dead one;
- a party waiting for the previous cycle to drain forgets the dead ones of that cycle;
- a lock held by a dead process can never be taken again: every ``wait``, ``reset`` and ``abort``
  then raises `BrokenBarrierError`, and ``broken`` is true.
"""

from __future__ import annotations

import contextlib
import pickle
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .._descriptors import shared_memory
from .._transport import dumps_for_transport
from ._fdshare import Handles
from ._liveness import (
    CHECK_INTERVAL,
    IDENTITY,
    NOBODY,
    Identity,
    alive,
    map_shared,
    me,
    read_identity,
    write_identity,
)
from ._sync import Condition, LockHolderDiedError
from ._waiting import Op, check_timeout, deadline_for, dual

BrokenBarrierError = threading.BrokenBarrierError

_FILLING, _DRAINING, _RESETTING, _BROKEN = 0, 1, -1, -2
_COUNTERS = struct.Struct("<qq")  # state, count; then one identity per party of the cycle
_TICK = 2 * CHECK_INTERVAL


def _memory_size(parties: int) -> int:
    return _COUNTERS.size + parties * IDENTITY.size


class _Arrival:
    """One call of `Barrier.wait`: whether it holds the condition's lock right now."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = True


class Barrier:
    """A barrier for ``parties`` participants in any processes (like ``threading.Barrier``).

    ``wait`` blocks in synchronous code and is awaitable under an event loop, as are `reset` and
    `abort` (they take the barrier's lock). A party killed while it waits, or while it holds the
    barrier's lock, breaks the barrier: the others get `BrokenBarrierError` instead of waiting
    for it.

    Args:
        parties: how many participants must call ``wait`` before all are released.
        action: called (in the process of the last to arrive) before they are released.
        timeout: default ``timeout`` of ``wait``.

    Raises:
        ValueError: ``parties`` is not a positive integer, or ``timeout`` is negative.
        TypeError: ``action`` is not callable, or ``timeout`` is not a number.
    """

    def __init__(self, parties: int, action: Callable[[], object] | None = None, timeout: float | None = None) -> None:
        if not isinstance(parties, int) or isinstance(parties, bool) or parties < 1:
            raise ValueError(f"parties must be a positive integer, not {parties!r}")
        if action is not None and not callable(action):
            raise TypeError(f"action must be callable or None, not {type(action).__name__}")
        check_timeout(timeout)
        action_bytes = b"" if action is None else dumps_for_transport(action, "the barrier's action")
        with contextlib.ExitStack() as undo:  # on failure, closes what was made
            cond = Condition()
            undo.callback(cond._close)
            handles = Handles(fds=[shared_memory(_memory_size(parties), "procpool-barrier")])
            undo.callback(handles.close)
            self._setup(cond, handles, parties, action_bytes, timeout)  # maps the memory
            undo.pop_all()
        self._action = action

    def _setup(
        self, cond: Condition, handles: Handles, parties: int, action_bytes: bytes, timeout: float | None
    ) -> None:
        self._cond = cond
        self._handles = handles
        self._memory = map_shared(handles.fds[0], _memory_size(parties))
        self._parties = parties
        self._action_bytes = action_bytes
        self._action = None
        self._timeout = timeout

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (self._cond, self._handles, self._parties, self._action_bytes, self._timeout)

    def __repr__(self) -> str:
        return f"<procpool.Barrier parties={self._parties} waiting={self.n_waiting} broken={self.broken}>"

    # The shared counters; read and written with the condition's lock held.

    @property
    def _state(self) -> int:
        state: int = _COUNTERS.unpack_from(self._memory)[0]
        return state

    @_state.setter
    def _state(self, value: int) -> None:
        _COUNTERS.pack_into(self._memory, 0, value, self._count)

    @property
    def _count(self) -> int:
        count: int = _COUNTERS.unpack_from(self._memory)[1]
        return count

    @_count.setter
    def _count(self, value: int) -> None:
        _COUNTERS.pack_into(self._memory, 0, self._state, value)

    def _party(self, index: int) -> Identity:
        return read_identity(self._memory, _COUNTERS.size + index * IDENTITY.size)

    def _set_party(self, index: int, who: Identity) -> None:
        write_identity(self._memory, _COUNTERS.size + index * IDENTITY.size, who)

    @property
    def parties(self) -> int:
        """How many participants the barrier waits for."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """How many participants are waiting now."""
        return self._count if self._state == _FILLING else 0

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken (a timeout, a cancellation, an action that raised, ``abort()``,
        a party that was killed)."""
        return self._state == _BROKEN or self._cond._lock._dead_holder() is not None

    def wait(self, timeout: float | None = None) -> Any:
        """Wait until ``parties`` participants have called ``wait``.

        Returns:
            This participant's arrival index, from 0 to ``parties - 1``.

        Raises:
            threading.BrokenBarrierError: the barrier is or got broken while waiting (a timeout or
                a cancelled await breaks it too, as a timeout does in ``threading``; so does a
                party that was killed while it waited, or while it held the barrier's lock).
        """
        return dual(self._wait(deadline_for(True, self._timeout if timeout is None else timeout)))

    def _wait(self, deadline: float | None) -> Op[int]:
        yield from self._take_lock()
        arrival = _Arrival()
        try:
            yield from self._enter(arrival)
            index = self._count
            self._count = index + 1
            self._set_party(index, me())
            try:
                if index + 1 == self._parties:
                    yield from self._release_all()
                else:
                    yield from self._wait_for_release(arrival, index, deadline)
            except GeneratorExit:  # discarded unfinished: no more waiting possible
                if arrival.held:
                    self._forget(index)
                raise
            except BaseException:
                if arrival.held:
                    yield from self._leave(index)
                raise
            yield from self._leave(index)
            return index
        finally:
            if arrival.held:
                self._cond.release()

    def _take_lock(self) -> Op[None]:
        try:
            yield from self._cond._lock._take_unless_dead()
        except LockHolderDiedError as exc:
            raise BrokenBarrierError(f"the barrier cannot be used again: {exc}") from exc

    def _sleep(self, arrival: _Arrival, until: float) -> Op[bool]:
        """Wait for a notification (True) or ``until``, the condition's lock released meanwhile."""
        arrival.held = False
        try:
            notified = yield from self._cond._wait(until)
        except LockHolderDiedError as exc:
            raise BrokenBarrierError(f"the barrier cannot be used again: {exc}") from exc
        except GeneratorExit:
            raise
        except BaseException:
            # A cancelled wait takes the lock back before the cancellation goes on, unless its
            # holder died: then nobody in this process holds it (the dead one does).
            arrival.held = self._cond._holds()
            raise
        arrival.held = True
        return notified

    def _forget(self, index: int) -> bool:
        """Count party ``index`` out of its cycle; whether that emptied a cycle that was leaving."""
        self._set_party(index, NOBODY)
        self._count -= 1
        if self._count == 0 and self._state in (_RESETTING, _DRAINING):
            self._state = _FILLING  # the last one out lets the next cycle fill
            return True
        return False

    def _leave(self, index: int) -> Op[None]:
        if self._forget(index):
            yield from self._cond._notify(sys.maxsize)

    def _enter(self, arrival: _Arrival) -> Op[None]:
        while self._state in (_DRAINING, _RESETTING):  # the previous cycle is still leaving
            if not (yield from self._sleep(arrival, time.monotonic() + _TICK)):
                yield from self._drop_dead_parties()
        if self._state == _BROKEN:
            raise BrokenBarrierError

    def _drop_dead_parties(self) -> Op[None]:
        """Count the dead parties out of the cycle: that breaks a filling cycle, and may end a
        leaving one."""
        dead = [index for index in range(self._parties) if not alive(self._party(index))]
        if not dead:
            return
        filling = self._state == _FILLING
        refilled = [self._forget(index) for index in dead]
        if filling:
            yield from self._break()
        elif any(refilled):
            yield from self._cond._notify(sys.maxsize)

    def _release_all(self) -> Op[None]:
        if not all(alive(self._party(index)) for index in range(self._parties - 1)):
            yield from self._drop_dead_parties()
            raise BrokenBarrierError
        try:
            action = self._load_action()
            if action is not None:
                action()
            self._state = _DRAINING
            yield from self._cond._notify(sys.maxsize)
        except GeneratorExit:
            raise
        except BaseException:
            yield from self._break()
            raise

    def _wait_for_release(self, arrival: _Arrival, index: int, deadline: float | None) -> Op[None]:
        while self._state == _FILLING:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                yield from self._break()
                raise BrokenBarrierError
            try:
                notified = yield from self._sleep(arrival, min(now + _TICK, deadline or now + _TICK))
            except GeneratorExit:
                raise
            except BaseException:  # cancelled: like a timeout, it breaks the barrier for everyone
                if arrival.held:
                    yield from self._break()
                raise
            if not notified and self._state == _FILLING and not alive(self._next_party(index)):
                yield from self._drop_dead_parties()
        if self._state < 0:
            raise BrokenBarrierError

    def _next_party(self, index: int) -> Identity:
        """The party after ``index`` in arrival order, round the cycle (`NOBODY` if none): the one
        that ``index`` watches."""
        for step in range(1, self._parties):
            who = self._party((index + step) % self._parties)
            if who != NOBODY:
                return who
        return NOBODY

    def _break(self) -> Op[None]:
        self._state = _BROKEN
        yield from self._cond._notify(sys.maxsize)

    def _load_action(self) -> Callable[[], object] | None:
        if self._action is None and self._action_bytes:
            self._action = pickle.loads(self._action_bytes)
        return self._action

    def reset(self) -> Any:
        """Return the barrier to its empty state; participants waiting now get `BrokenBarrierError`.

        Raises:
            threading.BrokenBarrierError: a party was killed holding the barrier's lock: the
                barrier cannot be used again.
        """
        return dual(self._reset())

    def _reset(self) -> Op[None]:
        cond = self._cond
        yield from self._take_lock()
        try:
            if self._count > 0:
                if self._state in (_FILLING, _BROKEN):
                    self._state = _RESETTING  # the waiters leave with an error; the last one out refills
            else:
                self._state = _FILLING
            yield from cond._notify(sys.maxsize)
        finally:
            cond.release()

    def abort(self) -> Any:
        """Break the barrier: current and future ``wait`` calls raise `BrokenBarrierError` until `reset`.

        Raises:
            threading.BrokenBarrierError: a party was killed holding the barrier's lock (the
                barrier is broken for good).
        """
        return dual(self._abort())

    def _abort(self) -> Op[None]:
        yield from self._take_lock()
        try:
            yield from self._break()
        finally:
            self._cond.release()


def _rebuild(cond: Condition, handles: Handles, parties: int, action_bytes: bytes, timeout: float | None) -> Barrier:
    rebuilt = Barrier.__new__(Barrier)
    rebuilt._setup(cond, handles, parties, action_bytes, timeout)
    return rebuilt
