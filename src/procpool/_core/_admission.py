"""`Admission`: the ``max_queued`` limit of a pool: refuse, or wait in turn, while it is full.

The count it limits is the pool's own (`Pool.queued`: tasks not yet started), read only when a
call asks to enter, so tasks pay nothing for it while the pool has room. Waiters are woken in
arrival order, one at a time, when a task starts or ends; each checks the count again itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import anyio

from .._errors import PoolFullError


class _Waiter:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = anyio.Event()


class Admission:
    def __init__(self, limit: int, queued: Callable[[], int]) -> None:
        self.limit = limit
        self._queued = queued
        self._waiters: deque[_Waiter] = deque()
        self._pass = False  # the next `enter` belongs to a call that waited its turn
        self._closed = False

    def enter(self) -> None:
        """Admit one task now, or raise `PoolFullError`.

        A call that has just waited (`wait`) enters at once; another enters only if the pool has
        room and nobody waits before it.
        """
        if self._pass:
            self._pass = False
            return
        queued = self._queued()
        if self._waiters or queued >= self.limit:
            raise PoolFullError(
                f"the pool is full: {queued} tasks wait to start (max_queued={self.limit}); "
                "retry later, or await pool.run(...), which waits for room"
            )

    async def wait(self) -> None:
        """Wait until the pool has room for one more task, in turn with other waiters.

        The caller must submit its task right after, with no await in between (`enter` lets it in).
        Returns at once, so the caller fails on its own check, once the pool is closed.
        """
        if not self._waiters and (self._closed or self._queued() < self.limit):
            self._pass = True
            return
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            while True:
                await waiter.event.wait()
                if self._closed or self._queued() < self.limit:
                    break
                waiter.event = anyio.Event()  # woken, but another took the room first
        except BaseException:
            self._waiters.remove(waiter)
            self.notify()  # pass on a wake-up this waiter will not use
            raise
        self._waiters.remove(waiter)
        self._pass = True
        self.notify()  # the next waiter checks for room after this one has submitted

    def notify(self, *_: object) -> None:
        """A task started or ended: wake the first waiter if there may be room now."""
        if self._waiters and (self._closed or self._queued() < self.limit):
            self._waiters[0].event.set()

    def close(self) -> None:
        """The pool stops accepting work: every waiter returns, to fail on the pool's own check."""
        self._closed = True
        for waiter in self._waiters:
            waiter.event.set()
