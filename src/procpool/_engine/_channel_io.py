"""How a worker's channel is watched: readiness callbacks, so results settle without a task switch.

Every channel of a pool is in an epoll set of the pool's own, and the event loop
watches that set's one descriptor: once per loop turn, however many channels are ready, the pool
polls the set and calls the ready channels' callbacks in turn, which settle results right there,
as a raw pipe would: the awaiting coroutine is the only task that wakes. On asyncio and uvloop the
loop calls back when the set is readable (``loop.add_reader``); trio has no readiness callbacks,
so there one task per pool waits for it.

A callback returns True when it stopped for the loop's sake with work left (see
`WorkerSlot._on_readable`): it is called again on the next loop turn, readable or not. How much
it may do per turn is `frames_this_turn`: a budget shared by every channel of the pool and
renewed each loop turn (`_TurnBudget`), so a timer never waits behind more than one budget of
results, logs and printed text, however many workers send them.

The set is level-triggered: a channel at end of file, or in error (a worker that died with frames
unread in its end leaves ECONNRESET on ours), is reported on every poll until it is unwatched, on
every loop alike. (uvloop, when it watched each channel itself, stopped watching a descriptor for
good after one error.)
"""

from __future__ import annotations

import asyncio
import select
import selectors
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

import sniffio
from anyio.abc import TaskGroup

if TYPE_CHECKING:
    import trio

Step = Callable[[], bool]  # True: call again on the next loop turn

# Seconds of the loop thread's CPU a turn may take: turns this long keep a 1 ms timer within its
# millisecond (measured). A task asleep in asyncio's own loops wakes two turns after its timer is
# due (the timer's callback runs in one turn, the task in the next), in uvloop's one turn (libuv
# runs due timers and then the ready callbacks in one turn): there the same lag allows longer turns.
_TURN_CPU = 0.00035
_UVLOOP_TURN_CPU = 0.0006
_FEWEST_FRAMES = 4


class ChannelIO(Protocol):
    def frames_this_turn(self) -> int:
        """How many frames a callback may settle now (0: wait for the next loop turn)."""

    def settled(self, count: int) -> None:
        """A callback settled ``count`` frames of its allowance."""

    def watch(self, fd: int, on_readable: Step) -> None:
        """Call ``on_readable`` whenever ``fd`` is readable (or at end of file, or in error), until `unwatch`."""

    def want_write(self, fd: int, on_writable: Step) -> None:
        """Call ``on_writable`` whenever ``fd`` is writable, until it returns False."""

    def flush_soon(self, fd: int, on_writable: Step) -> None:
        """Call ``on_writable`` at the end of this loop turn, then as `want_write` if it returns True."""

    def unwatch(self, fd: int) -> None:
        """Stop calling back for ``fd``; call before closing it."""

    def close(self) -> None:
        """Stop watching for good (the pool has stopped)."""

    def abandon(self) -> None:
        """Let go of what watching holds, without the event loop (it has been closed)."""


def channel_io(task_group: TaskGroup, frames_per_turn: int) -> ChannelIO:
    """The way to watch channels in the running event loop, until `ChannelIO.close`; trio's task
    runs in ``task_group`` (entered by the time a channel is watched).
    ``frames_per_turn``: how many frames the pool's callbacks settle per loop turn at most, all
    channels together (the budget shrinks below it when turns run long)."""
    if sniffio.current_async_library() == "asyncio":
        loop = asyncio.get_running_loop()
        uvloop = type(loop).__module__.startswith("uvloop")
        return _LoopCallback(loop, frames_per_turn, _UVLOOP_TURN_CPU if uvloop else _TURN_CPU)
    return _WaitingTask(task_group, frames_per_turn)


class _TurnBudget:
    """The frames all of a pool's channels may settle in one loop turn, renewed on the next turn
    (``renew_next_turn`` arranges that) while frames come. Each result wakes a coroutine that runs
    on the next turn, at a cost that only the turn's length shows, so the budget follows it: it
    shrinks when a turn took more than ``turn_cpu`` seconds of the loop thread's CPU time, and
    grows back when turns are short."""

    def __init__(self, most: int, renew_next_turn: Callable[[], object], turn_cpu: float = _TURN_CPU) -> None:
        self._most = self.per_turn = self.left = most
        self._turn_cpu = turn_cpu
        self._renew_next_turn = renew_next_turn
        self.renewal_due = False
        self._turn_began = time.thread_time()

    def settled(self, count: int) -> None:
        self.left -= count
        if not self.renewal_due:
            self.renewal_due = True
            self._renew_next_turn()

    def renew(self) -> None:
        # Runs once per turn while frames come: the CPU time since the last renewal is a turn's.
        now = time.thread_time()
        turn, self._turn_began = now - self._turn_began, now
        if turn > self._turn_cpu:
            self.per_turn = max(min(_FEWEST_FRAMES, self._most), self.per_turn * 3 // 4)  # never above the most
        elif turn < self._turn_cpu / 2 and self.per_turn < self._most:
            self.per_turn += 1
        self.renewal_due = False
        self.left = self.per_turn


# poll's flags, which epoll's share (an error or a hang-up wakes a reader and a writer alike)
_READ_FLAGS = select.POLLIN | select.POLLERR | select.POLLHUP
_WRITE_FLAGS = select.POLLOUT | select.POLLERR | select.POLLHUP


class _ReadySet(Protocol):
    """What is used here of `select.epoll`: a set of descriptors, itself a descriptor that is
    readable while one of them is ready."""

    def fileno(self) -> int: ...
    def register(self, fd: int, eventmask: int, /) -> None: ...
    def modify(self, fd: int, eventmask: int, /) -> None: ...
    def unregister(self, fd: int, /) -> None: ...
    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]: ...
    def close(self) -> None: ...


class _SelectorSet:
    """`_ReadySet` over the platform's selector (kqueue), where there is no epoll."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def fileno(self) -> int:
        return cast("selectors.EpollSelector", self._selector).fileno()  # kqueue's has one too

    def register(self, fd: int, eventmask: int, /) -> None:
        self._selector.register(fd, _selector_events(eventmask))

    def modify(self, fd: int, eventmask: int, /) -> None:
        self._selector.modify(fd, _selector_events(eventmask))

    def unregister(self, fd: int, /) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]:
        return [
            (
                key.fd,
                (select.POLLIN if events & selectors.EVENT_READ else 0)
                | (select.POLLOUT if events & selectors.EVENT_WRITE else 0),
            )
            for key, events in self._selector.select(timeout)
        ]

    def close(self) -> None:
        self._selector.close()


def _selector_events(eventmask: int) -> int:
    return (selectors.EVENT_READ if eventmask & select.POLLIN else 0) | (
        selectors.EVENT_WRITE if eventmask & select.POLLOUT else 0
    )


def _new_ready_set() -> _ReadySet:
    # Raw epoll where there is one: the selectors module's costs a Python call per ready channel.
    return select.epoll() if hasattr(select, "epoll") else _SelectorSet()


class _ChannelSet:
    """The pool's channels in an epoll set of its own, and the calls made for them (see the
    module's docstring). The loop's side, how the set's descriptor is watched and what runs on
    the next turn, is a subclass's."""

    def __init__(self, budget: _TurnBudget) -> None:
        self._budget = budget
        self._ready_set = _new_ready_set()  # at the pool's start, where no descriptor to spare is a clear error
        self._set_fd = self._ready_set.fileno()
        self._registered: dict[int, int] = {}  # the flags each descriptor in the set is watched for
        self._readers: dict[int, Step] = {}  # what each watched descriptor calls
        self._writers: dict[int, Step] = {}  # what each descriptor watched for writing calls
        # Reads due, readable or not, in order: a step left out of a turn's budget, or with
        # frames left after it, goes on a later turn, before channels that became ready since.
        self._due: dict[int, Step] = {}
        self._flushing: dict[int, Step] = {}  # writes due at the end of this turn

    def frames_this_turn(self) -> int:
        return self._budget.left

    def settled(self, count: int) -> None:
        self._budget.settled(count)

    def watch(self, fd: int, on_readable: Step) -> None:
        self._arm(fd, self._registered.get(fd, 0) | select.POLLIN)
        self._readers[fd] = on_readable
        self._watching()

    def want_write(self, fd: int, on_writable: Step) -> None:
        self._arm(fd, self._registered.get(fd, 0) | select.POLLOUT)
        self._writers[fd] = on_writable
        self._watching()

    def flush_soon(self, fd: int, on_writable: Step) -> None:
        self._flushing[fd] = on_writable
        self._watching()
        self._flush_soon()

    def unwatch(self, fd: int) -> None:
        self._readers.pop(fd, None)
        self._writers.pop(fd, None)
        self._due.pop(fd, None)
        self._flushing.pop(fd, None)
        self._arm(fd, 0)  # before it is closed: its number may be reused
        if not (self._readers or self._writers or self._flushing):
            self._idle()

    def close(self) -> None:
        """The pool has stopped: let the set go."""
        for watched in (self._readers, self._writers, self._due, self._flushing, self._registered):
            watched.clear()
        self._idle()
        self._ready_set.close()

    def abandon(self) -> None:
        self._ready_set.close()  # the loop that watched it is closed: nothing of it runs again

    def _arm(self, fd: int, flags: int) -> None:
        """Watch ``fd`` for ``flags`` (none: not at all) from now on."""
        registered = self._registered
        if fd not in registered:
            if flags:
                self._ready_set.register(fd, flags)
                registered[fd] = flags
        elif not flags:
            del registered[fd]
            self._ready_set.unregister(fd)
        elif flags != registered[fd]:
            self._ready_set.modify(fd, flags)
            registered[fd] = flags

    def _turn(self) -> None:
        """Call the steps of the channels due and ready, in turn, while the turn's budget lasts;
        then the writes due."""
        due, flushing, readers, writers = self._due, self._flushing, self._readers, self._writers
        for fd, flags in self._ready_set.poll(0):
            if flags & _READ_FLAGS and fd in readers and fd not in due:
                due[fd] = readers[fd]
            if flags & _WRITE_FLAGS and fd in writers and fd not in flushing:
                flushing[fd] = writers[fd]
        budget = self._budget
        try:
            for fd in list(due):  # each at most once a turn
                if budget.left <= 0:
                    break
                step = due.pop(fd, None)
                if step is not None and step():  # None: a step before it unwatched it
                    due[fd] = step  # frames left: on a later turn, after those that waited
        finally:
            if due and not budget.renewal_due:
                self._turn_soon()  # no renewal to call them (none settled: one raised, say)
            self._flush()

    def _flush(self) -> None:
        """Call the writes due (those the reads just asked for too)."""
        flushing, writers = self._flushing, self._writers
        while flushing:
            fd = next(iter(flushing))
            on_writable = flushing.pop(fd)
            more = on_writable()
            if more and fd not in writers:
                self.want_write(fd, on_writable)  # the channel is full: on with it when writable
            elif not more and fd in writers:
                del writers[fd]
                self._arm(fd, self._registered.get(fd, 0) & ~select.POLLOUT)

    # The loop's side.

    def _watching(self) -> None:
        """Something is watched: see that `_turn` is called when the set is readable."""

    def _idle(self) -> None:
        """Nothing is watched any more."""

    def _turn_soon(self) -> None:
        """Call `_turn` on the next loop turn."""
        raise NotImplementedError

    def _flush_soon(self) -> None:
        """Call `_flush` at the end of this loop turn."""
        raise NotImplementedError


class _LoopCallback(_ChannelSet):
    """asyncio's (and uvloop's): the loop calls back when the set is readable. The budget is
    renewed by a call on the next turn once a turn has settled frames: before the next turn's
    readiness callback (asyncio), or after this turn's (uvloop). A readiness callback that finds
    the budget spent leaves the channels to the renewal, which calls `_turn`. Every call due on
    the next turn is cancelled at `close`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, frames_per_turn: int, turn_cpu: float) -> None:
        super().__init__(_TurnBudget(frames_per_turn, lambda: self._once_soon(self._renew), turn_cpu))
        self._loop = loop
        self._left_to_renewal = False  # a readiness callback found the budget spent
        self._pending: dict[Callable[[], None], asyncio.Handle] = {}  # calls due on the next turn
        loop.add_reader(self._set_fd, self._on_readable)

    def close(self) -> None:
        self._loop.remove_reader(self._set_fd)
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        super().close()

    def _on_readable(self) -> None:
        if self._budget.left > 0:
            self._turn()
        else:
            self._left_to_renewal = True

    def _renew(self) -> None:
        self._budget.renew()
        if self._due or self._left_to_renewal:
            self._left_to_renewal = False
            self._turn()

    def _turn_soon(self) -> None:
        self._once_soon(self._turn)

    def _flush_soon(self) -> None:
        self._once_soon(self._flush)

    def _once_soon(self, method: Callable[[], None]) -> None:
        """Call ``method`` on the next loop turn, once however often asked meanwhile."""
        if method not in self._pending:
            self._pending[method] = self._loop.call_soon(self._call_pending, method)

    def _call_pending(self, method: Callable[[], None]) -> None:
        del self._pending[method]
        method()


class _WaitingTask(_ChannelSet):
    """trio's: one task waits for the set to be readable and runs a turn, once per loop turn
    (trio's batch of runnable tasks), renewing the budget first when frames were settled since.
    It runs while anything is watched, so that it never holds the pool's task group open. A task
    per channel cost a wake-up, and trio's re-arming of the descriptor, per ready channel, and
    one per turn for each channel that had only to find the budget spent: the parent's CPU per
    task grew with workers."""

    def __init__(self, task_group: TaskGroup, frames_per_turn: int) -> None:
        import trio  # only ever with trio running

        super().__init__(_TurnBudget(frames_per_turn, _no_renewal))  # the task renews it each turn
        self._task_group = task_group
        self._checkpoint = trio.lowlevel.checkpoint
        self._wait_readable = trio.lowlevel.wait_readable
        self._new_scope = trio.CancelScope
        self._running = False
        self._sleep: trio.CancelScope | None = None  # the task's wait for readiness, while it waits

    def _watching(self) -> None:
        if not self._running:
            self._task_group.start_soon(self._watch)
            self._running = True

    def _idle(self) -> None:
        self._wake()  # to end

    def _turn_soon(self) -> None:
        pass  # the task runs each turn while reads are due

    def _flush_soon(self) -> None:
        self._wake()

    def _wake(self) -> None:
        if self._sleep is not None:
            self._sleep.cancel()

    async def _watch(self) -> None:
        budget, fd = self._budget, self._set_fd
        try:
            while self._readers or self._writers or self._flushing:
                if budget.renewal_due:
                    budget.renew()
                self._turn()
                if self._due or self._flushing:
                    await self._checkpoint()  # work due: only let the others run first
                else:
                    # Woken when a flush is due, when nothing is left to watch, and at `close`:
                    # trio stops waiting on the set's descriptor as the scope is cancelled.
                    with self._new_scope() as self._sleep:
                        await self._wait_readable(fd)
                    self._sleep = None
        finally:
            self._sleep = None
            self._running = False


def _no_renewal() -> None:
    """`_TurnBudget`'s renewal on the next turn, where the turn's own task renews it."""
