"""How a worker's channel is watched: readiness callbacks, so results settle without a task switch.

On asyncio and uvloop a channel is watched with ``loop.add_reader`` for as long as its worker
lives (one registration, not one per wait), and the callback settles results right there, as a
raw pipe would: the awaiting coroutine is the only task that wakes. trio has no readiness
callbacks: there one task per pool waits on an epoll set of all the pool's channels and calls
the same callbacks.

A callback returns True when it stopped for the loop's sake with work left (see
`WorkerSlot._on_readable`): it is called again on the next loop turn, readable or not. How much
it may do per turn is `frames_this_turn`: a budget shared by every channel of the pool and
renewed each loop turn (`_TurnBudget`), so a timer never waits behind more than one budget of
results, logs and printed text, however many workers send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import time
from collections.abc import Callable
from typing import Protocol, cast

import sniffio
from anyio.abc import TaskGroup

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
        """Call ``on_readable`` whenever ``fd`` is readable, until `unwatch`."""

    def want_write(self, fd: int, on_writable: Step) -> None:
        """Call ``on_writable`` whenever ``fd`` is writable, until it returns False."""

    def flush_soon(self, fd: int, on_writable: Step) -> None:
        """Call ``on_writable`` at the end of this loop turn, then as `want_write` if it returns True."""

    def drain(self, fd: int) -> None:
        """Call ``fd``'s callback each loop turn, readable or not, until `unwatch`: its worker has
        died, and the loop may have stopped watching its channel before the end of file was read."""

    def unwatch(self, fd: int) -> None:
        """Stop calling back for ``fd``; call before closing it."""


def channel_io(task_group: TaskGroup, frames_per_turn: int) -> ChannelIO:
    """The way to watch channels in the running event loop; trio's tasks run in ``task_group``.
    ``frames_per_turn``: how many frames the pool's callbacks settle per loop turn at most, all
    channels together (the budget shrinks below it when turns run long)."""
    if sniffio.current_async_library() == "asyncio":
        loop = asyncio.get_running_loop()
        uvloop = type(loop).__module__.startswith("uvloop")
        return _LoopCallbacks(loop, frames_per_turn, _UVLOOP_TURN_CPU if uvloop else _TURN_CPU)
    return _OneWatcher(task_group, frames_per_turn)


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


class _LoopCallbacks:
    """asyncio's (and uvloop's) readiness callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, frames_per_turn: int, turn_cpu: float) -> None:
        self._loop = loop
        # Renewed before the next turn's readiness callbacks (asyncio), or after this turn's (uvloop).
        self._budget = _TurnBudget(frames_per_turn, lambda: loop.call_soon(self._renew), turn_cpu)
        self._again: dict[int, asyncio.Handle] = {}  # the step due again on the next turn, by descriptor
        # Steps that stopped because the turn's budget was spent, in that order: the renewal calls
        # them while the new budget lasts, and the first left out goes first next time.
        self._after_renewal: dict[int, Step] = {}
        self._readers: dict[int, Step] = {}  # what each watched descriptor calls
        self._draining: set[int] = set()  # channels of dead workers: called each turn until unwatched
        self._flushing: dict[int, Step] = {}  # the write due at the end of this turn, by descriptor

    def frames_this_turn(self) -> int:
        return self._budget.left

    def settled(self, count: int) -> None:
        self._budget.settled(count)

    def watch(self, fd: int, on_readable: Step) -> None:
        self._readers[fd] = on_readable
        self._loop.add_reader(fd, self._step, fd, on_readable)

    def want_write(self, fd: int, on_writable: Step) -> None:
        self._loop.add_writer(fd, self._write, fd, on_writable)

    def flush_soon(self, fd: int, on_writable: Step) -> None:
        self._flushing[fd] = on_writable
        self._loop.call_soon(self._flush, fd, on_writable)

    def _flush(self, fd: int, on_writable: Step) -> None:
        if self._flushing.get(fd) is not on_writable:
            return  # unwatched meanwhile: its number may be another channel's by now
        del self._flushing[fd]
        if on_writable():
            self.want_write(fd, on_writable)

    def unwatch(self, fd: int) -> None:
        self._readers.pop(fd, None)
        self._after_renewal.pop(fd, None)
        self._draining.discard(fd)
        again = self._again.pop(fd, None)
        if again is not None:
            again.cancel()  # its number may be another channel's by the next turn
        self._flushing.pop(fd, None)
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)

    def drain(self, fd: int) -> None:
        # uvloop (libuv) stops watching a descriptor for good once epoll reports an error on it,
        # after one last callback, where asyncio's selector loops keep calling: a worker that dies
        # with frames unread in its end of the channel leaves ours in error (ECONNRESET), and
        # that last callback may have read frames but not yet the end of file.
        on_readable = self._readers.get(fd)
        if on_readable is not None:
            self._draining.add(fd)
            self._call_again(fd, on_readable)

    def _step(self, fd: int, on_readable: Step) -> None:
        """The reader's callback: a call due again on the next turn is due no more. Left queued,
        it would find its descriptor due again (this step asks again) and run too, each such
        pair adding one more call per turn for as long as frames keep coming."""
        again = self._again.pop(fd, None)
        if again is not None:
            again.cancel()
        if not self._waits_for_budget(fd, on_readable):  # readable while the turn's budget is spent
            self._read(fd, on_readable)

    def _step_again(self, fd: int, on_readable: Step) -> None:
        del self._again[fd]  # this call's own entry: cancelled, it would not run
        self._read(fd, on_readable)

    def _read(self, fd: int, on_readable: Step) -> None:
        if (on_readable() or fd in self._draining) and not self._waits_for_budget(fd, on_readable):
            self._call_again(fd, on_readable)

    def _waits_for_budget(self, fd: int, on_readable: Step) -> bool:
        """With the turn's budget spent, leave ``on_readable`` to the renewal (True); a dead
        worker's channel is called on each turn whatever the budget (`drain`)."""
        if self._budget.left > 0 or fd in self._draining:
            return False
        self._after_renewal[fd] = on_readable
        return True

    def _renew(self) -> None:
        """The next turn's budget, and the steps that waited for it. A step is not called with
        none left: a call of its own per turn to find the budget spent was most of the calls when
        several channels were busy."""
        self._budget.renew()
        self._call_waiting()

    def _call_waiting(self) -> None:
        """Call the steps that waited for the budget, in turn, while it lasts."""
        budget = self._budget
        waiting = self._after_renewal
        try:
            while waiting and budget.left > 0:
                fd = next(iter(waiting))
                self._read(fd, waiting.pop(fd))
        finally:
            if waiting and budget.left > 0:  # a step raised: the others must not wait for frames to come
                self._loop.call_soon(self._call_waiting)

    def _call_again(self, fd: int, on_readable: Step) -> None:
        """Call ``on_readable`` on the next loop turn, readable or not (once, however often asked)."""
        if fd not in self._again:
            self._again[fd] = self._loop.call_soon(self._step_again, fd, on_readable)

    def _write(self, fd: int, on_writable: Step) -> None:
        if not on_writable():
            self._loop.remove_writer(fd)


class _OneWatcher:
    """trio, which has no readiness callbacks: one task watches every channel of the pool, through
    an epoll set of its own (a selector) whose descriptor trio waits on. It wakes once per loop
    turn (trio's batch of runnable tasks) however many channels are ready, renews the budget, and
    calls the ready channels' steps in turn while the budget lasts, then the writes due. A task per
    channel cost a wake-up, and trio's re-arming of the descriptor, per ready channel, and a wake-up
    per turn of each channel that had only to find the budget spent: the parent's cost per task
    grew with the number of workers."""

    def __init__(self, task_group: TaskGroup, frames_per_turn: int) -> None:
        import trio  # only ever with trio running

        self._task_group = task_group
        self._checkpoint = trio.lowlevel.checkpoint
        self._wait_readable = trio.lowlevel.wait_readable
        self._new_scope = trio.CancelScope
        self._budget = _TurnBudget(frames_per_turn, _no_renewal)  # the watcher renews it each turn
        self._selector: selectors.BaseSelector | None = None  # while the watcher runs
        self._sleep: trio.CancelScope | None = None  # the watcher's wait for readiness, while it waits
        self._readers: dict[int, Step] = {}
        self._writers: dict[int, Step] = {}  # what each descriptor watched for writing calls
        # Reads due on this turn, readable or not, in order: a step left out of a turn's budget,
        # or with frames left after it, goes again on the next turn, before newly ready ones.
        self._due: dict[int, Step] = {}
        self._flushing: dict[int, Step] = {}  # writes due at the end of this turn

    def frames_this_turn(self) -> int:
        return self._budget.left

    def settled(self, count: int) -> None:
        self._budget.settled(count)

    def watch(self, fd: int, on_readable: Step) -> None:
        self._readers[fd] = on_readable
        self._interest(fd)

    def want_write(self, fd: int, on_writable: Step) -> None:
        self._writers[fd] = on_writable
        self._interest(fd)

    def flush_soon(self, fd: int, on_writable: Step) -> None:
        self._flushing[fd] = on_writable
        self._selector_running()
        self._wake()

    def drain(self, fd: int) -> None:
        pass  # its selector reports the end of file (or the error) as readiness, each turn

    def unwatch(self, fd: int) -> None:
        self._readers.pop(fd, None)
        self._writers.pop(fd, None)
        self._due.pop(fd, None)
        self._flushing.pop(fd, None)
        if self._selector is not None:
            with contextlib.suppress(KeyError):
                self._selector.unregister(fd)  # before it is closed: its number may be reused
        if not (self._readers or self._writers or self._flushing):
            self._wake()  # to end: nothing is left to watch

    def _interest(self, fd: int) -> None:
        """Tell the selector what ``fd`` is watched for now."""
        events = (selectors.EVENT_READ if fd in self._readers else 0) | (
            selectors.EVENT_WRITE if fd in self._writers else 0
        )
        selector = self._selector_running()
        if fd not in selector.get_map():
            if events:
                selector.register(fd, events)
        elif events:
            selector.modify(fd, events)
        else:
            selector.unregister(fd)

    def _selector_running(self) -> selectors.BaseSelector:
        """The selector, and the task that waits on it: started again after it ended."""
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
            self._task_group.start_soon(self._watch, self._selector)
        return self._selector

    def _wake(self) -> None:
        if self._sleep is not None:
            self._sleep.cancel()

    async def _watch(self, selector: selectors.BaseSelector) -> None:
        # Ends once nothing is watched, so that it never holds the pool's task group open.
        try:
            while self._readers or self._writers or self._flushing:
                if self._due or self._flushing:
                    await self._checkpoint()  # work due: only let the others run first
                else:
                    with self._new_scope() as self._sleep:
                        # epoll's (kqueue's) selector: readable while a descriptor in it is ready
                        await self._wait_readable(cast("selectors.EpollSelector", selector).fileno())
                    self._sleep = None
                self._turn(selector)
        finally:
            self._sleep = self._selector = None
            selector.close()

    def _turn(self, selector: selectors.BaseSelector) -> None:
        budget = self._budget
        if budget.renewal_due:
            budget.renew()
        due, flushing = self._due, self._flushing
        for key, events in selector.select(0):
            fd = key.fd
            if events & selectors.EVENT_READ and fd in self._readers:
                due.setdefault(fd, self._readers[fd])
            if events & selectors.EVENT_WRITE and fd in self._writers:
                flushing.setdefault(fd, self._writers[fd])
        for fd in list(due):  # each at most once a turn
            if budget.left <= 0:
                break
            step = due.pop(fd, None)
            if step is None:
                continue  # unwatched by a step before it
            if step():
                due[fd] = step  # frames left: on the next turn, after those that waited
        while flushing:  # with those that the reads just asked for
            fd = next(iter(flushing))
            on_writable = flushing.pop(fd)
            if on_writable() != (fd in self._writers):
                if fd in self._writers:
                    del self._writers[fd]
                else:
                    self._writers[fd] = on_writable  # the channel is full: on with it when writable
                self._interest(fd)


def _no_renewal() -> None:
    """`_TurnBudget`'s renewal on the next turn, where the turn's own task renews it."""
