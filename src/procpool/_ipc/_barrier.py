"""`Barrier`: ``parties`` processes (or tasks) wait until all have arrived, then all go on.

The algorithm is the one of ``threading.Barrier`` (a cycle fills, then drains; a timeout, a
cancellation or ``abort()`` breaks it), run over a procpool `Condition`, with its two counters in a
small shared memory file so that every process sees them.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import struct
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from .._transport import dumps_for_transport
from ._fdshare import Handles
from ._sync import Condition
from ._waiting import Op, check_timeout, deadline_for, dual

BrokenBarrierError = threading.BrokenBarrierError

_FILLING, _DRAINING, _RESETTING, _BROKEN = 0, 1, -1, -2
_COUNTERS = struct.Struct("<qq")  # state, count


def _shared_memory(size: int) -> int:
    """A descriptor of ``size`` zeroed bytes that processes can map."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd: int = memfd_create("procpool-barrier", os.MFD_CLOEXEC)
    else:
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Barrier:
    """A barrier for ``parties`` participants in any processes (like ``threading.Barrier``).

    ``wait`` blocks in synchronous code and is awaitable under an event loop, as are `reset` and
    `abort` (they take the barrier's lock).

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
            handles = Handles(fds=[_shared_memory(_COUNTERS.size)])
            undo.callback(handles.close)
            self._setup(cond, handles, parties, action_bytes, timeout)  # maps the memory
            undo.pop_all()
        self._action = action

    def _setup(
        self, cond: Condition, handles: Handles, parties: int, action_bytes: bytes, timeout: float | None
    ) -> None:
        self._cond = cond
        self._handles = handles
        self._memory = mmap.mmap(handles.fds[0], _COUNTERS.size)
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
        """Whether the barrier is broken (a timeout, a cancellation, an action that raised, ``abort()``)."""
        return self._state == _BROKEN

    def wait(self, timeout: float | None = None) -> Any:
        """Wait until ``parties`` participants have called ``wait``.

        Returns:
            This participant's arrival index, from 0 to ``parties - 1``.

        Raises:
            threading.BrokenBarrierError: the barrier is or got broken while waiting (a timeout or
                a cancelled await breaks it too, as a timeout does in ``threading``).
        """
        return dual(self._wait(deadline_for(True, self._timeout if timeout is None else timeout)))

    def _wait(self, deadline: float | None) -> Op[int]:
        cond = self._cond
        yield from cond._lock._acquire(None)
        try:
            yield from self._enter()
            index = self._count
            self._count = index + 1
            try:
                if index + 1 == self._parties:
                    yield from self._release_all()
                else:
                    yield from self._wait_for_release(deadline)
            except GeneratorExit:  # discarded unfinished: no more waiting possible
                self._count -= 1
                raise
            except BaseException:
                yield from self._leave()
                raise
            yield from self._leave()
            return index
        finally:
            cond.release()

    def _leave(self) -> Op[None]:
        self._count -= 1
        if self._count == 0 and self._state in (_RESETTING, _DRAINING):
            self._state = _FILLING  # the last one out lets the next cycle fill
            yield from self._cond._notify(sys.maxsize)

    def _enter(self) -> Op[None]:
        while self._state in (_DRAINING, _RESETTING):
            yield from self._cond._wait(None)  # the previous cycle is still leaving
        if self._state == _BROKEN:
            raise BrokenBarrierError

    def _release_all(self) -> Op[None]:
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

    def _wait_for_release(self, deadline: float | None) -> Op[None]:
        try:
            released = yield from self._cond._wait_for(lambda: self._state != _FILLING, deadline)
        except GeneratorExit:
            raise
        except BaseException:  # cancelled: like a timeout, it breaks the barrier for everyone
            yield from self._break()
            raise
        if not released:
            yield from self._break()
            raise BrokenBarrierError
        if self._state < 0:
            raise BrokenBarrierError

    def _break(self) -> Op[None]:
        self._state = _BROKEN
        yield from self._cond._notify(sys.maxsize)

    def _load_action(self) -> Callable[[], object] | None:
        if self._action is None and self._action_bytes:
            self._action = pickle.loads(self._action_bytes)
        return self._action

    def reset(self) -> Any:
        """Return the barrier to its empty state; participants waiting now get `BrokenBarrierError`."""
        return dual(self._reset())

    def _reset(self) -> Op[None]:
        cond = self._cond
        yield from cond._lock._acquire(None)
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
        """Break the barrier: current and future ``wait`` calls raise `BrokenBarrierError` until `reset`."""
        return dual(self._abort())

    def _abort(self) -> Op[None]:
        cond = self._cond
        yield from cond._lock._acquire(None)
        try:
            yield from self._break()
        finally:
            cond.release()


def _rebuild(cond: Condition, handles: Handles, parties: int, action_bytes: bytes, timeout: float | None) -> Barrier:
    rebuilt = Barrier.__new__(Barrier)
    rebuilt._setup(cond, handles, parties, action_bytes, timeout)
    return rebuilt
