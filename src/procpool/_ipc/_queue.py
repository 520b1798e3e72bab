"""`Queue`: a multi-producer, multi-consumer FIFO between processes, awaitable in async code.

Items travel as whole messages on one ``SOCK_SEQPACKET`` socket pair (see `_message`): any number
of processes put on one end and get from the other without a lock. A pipe of tokens counts the
free slots: ``put`` takes one, ``get`` gives one back, so ``maxsize`` bounds the queue and
``qsize()`` is the tokens missing. ``close()`` shuts the socket down for every process at once: puts
fail, gets drain what is left and then see the end.

A bounded queue's ``put`` sends the item itself, waiting for room if need be. An unbounded one's
never waits: what the socket cannot take at once (its buffer holds only thousands of small items)
stays in the putting process, in order, and a feeder thread of that process sends it as room
comes, as ``multiprocessing.Queue``'s does; the thread ends when it has sent everything. It is not
a daemon, so a process that exits waits until its items are in the queue (or the queue is closed);
but a pool worker that stops waits a bounded time, then drops the rest and says so (`flush_feeders`).
A get that is cancelled while it waits has taken nothing.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

from .._errors import ProcpoolError
from ._fdshare import Handles
from ._message import END, WOULD_BLOCK, dumps, send_op, socket_pair, try_receive
from ._waiting import (
    Op,
    Port,
    Wait,
    bytes_readable,
    deadline_for,
    dual,
    give_tokens,
    run_async,
    run_blocking,
    take_token_op,
    token_pipe,
)

T = TypeVar("T")

_FEEDER_LOOK_INTERVAL = 0.1  # seconds a feeder waits for room before it looks whether to go on


class QueueClosedError(ProcpoolError):
    """The queue is closed: ``put`` is refused, and ``get`` has no item left to return."""


class Queue(Generic[T]):
    """A queue shared by processes: blocking in synchronous code, awaitable in async code.

    Create it in the parent and pass it to children (``procpool.Process`` arguments, pool tasks,
    other queues). In synchronous code (a child) its methods block, as ``multiprocessing.Queue``'s
    do; under an event loop, ``put``/``get`` return awaitables that never block the loop and use
    no thread (but an unbounded queue's feeder, see ``maxsize``), and ``async for item in queue``
    runs until the queue is closed and drained.

    Args:
        maxsize: how many items the queue holds before ``put`` waits; 0 for no limit: ``put``
            never waits, and what the operating system's socket buffer cannot take at once
            (thousands of small items on Linux) waits in the putting process, sent in order by a
            thread of that process.

    Raises:
        ValueError: ``maxsize`` is negative or larger than this system allows.
    """

    def __init__(self, maxsize: int = 0) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
            raise ValueError(f"maxsize must be an integer >= 0 (0: unbounded), not {maxsize!r}")
        reader, writer = socket_pair()
        try:
            slots_read, slots_write, slots = token_pipe(maxsize or None, "maxsize")
        except BaseException:
            reader.close()
            writer.close()
            raise
        self._setup(Handles([reader, writer], [slots_read, slots_write]), maxsize, slots)

    def _setup(self, handles: Handles, maxsize: int, slots: int) -> None:
        self._handles = handles
        self._reader, self._writer = handles.sockets
        self._slots_read, self._slots_write = handles.fds
        self._maxsize = maxsize
        self._slots = slots
        self._reader_port = Port(self._reader.fileno())
        self._writer_port = Port(self._writer.fileno())
        self._slots_port = Port(self._slots_read)
        # Unbounded: the items put here that the socket could not take yet, the thread sending
        # them, and whether this process closed the queue (shut down once they are sent).
        self._lock = threading.Lock()
        self._unsent: deque[bytes] = deque()
        self._feeder: threading.Thread | None = None
        self._closed_here = False

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (self._handles, self._maxsize, self._slots)

    def __repr__(self) -> str:
        return f"<procpool.Queue maxsize={self._maxsize}>"

    @property
    def maxsize(self) -> int:
        """The bound given at creation (0: unbounded)."""
        return self._maxsize

    # -- put -----------------------------------------------------------------------------------

    def put(self, obj: T, block: bool = True, timeout: float | None = None) -> Any:
        """Put ``obj`` at the end of the queue, waiting for a free slot if it is full (only a
        bounded queue is ever full).

        Under an event loop this returns an awaitable: ``await queue.put(obj)``.

        Args:
            obj: any object that pickle (or cloudpickle) can carry.
            block: wait for room (True) or raise `queue.Full` at once (False).
            timeout: with ``block``, raise `queue.Full` after this many seconds (None: no limit).

        Raises:
            queue.Full: no room within the time allowed.
            QueueClosedError: the queue is closed.
            SerializationError: ``obj`` cannot be pickled.
        """
        return dual(self._put(dumps(obj), deadline_for(block, timeout)))

    def put_nowait(self, obj: T) -> None:
        """Put ``obj`` if there is room right now (never waits, in sync and async code alike).

        Raises:
            queue.Full: the queue is bounded and full.
            QueueClosedError: the queue is closed.
            SerializationError: ``obj`` cannot be pickled.
        """
        run_blocking(self._put(dumps(obj), time.monotonic()))

    def _put(self, data: bytes, deadline: float | None) -> Op[None]:
        if self._maxsize:
            yield from self._send(data, deadline)
            return
        if self._closed_here:
            raise QueueClosedError("put() on a closed queue")
        # Unbounded: never waits. A thread's earlier items not sent yet are in `_unsent` (until
        # the feeder has sent them), so this one goes straight out only if none is.
        if not self._unsent:
            try:
                yield from self._send(data, time.monotonic())  # the deadline is now: it never suspends
                return
            except queue.Full:
                pass  # no room now
        with self._lock:
            if self._closed_here:  # by another thread meanwhile: the feeder may have shut the queue
                raise QueueClosedError("put() on a closed queue")
            self._unsent.append(data)
            if self._feeder is None:
                self._feeder = threading.Thread(target=self._feed, name="procpool Queue feeder")
                self._feeder.start()
                _feeding.add(self)

    def _send(self, data: bytes, deadline: float | None) -> Op[None]:
        if not (yield from take_token_op(self._slots_port, deadline)):
            raise queue.Full
        try:
            sent = yield from send_op(self._writer, self._writer_port, data, deadline)
        except BrokenPipeError:
            give_tokens(self._slots_write)
            raise QueueClosedError("put() on a closed queue") from None
        except BaseException:  # cancelled while waiting for room: the item was not sent
            give_tokens(self._slots_write)
            raise
        if not sent:
            give_tokens(self._slots_write)
            raise queue.Full

    def _feed(self) -> None:
        """The feeder thread: send the items put here that the socket could not take, in order,
        waiting for room; end once none is left (or the queue is closed: they can go nowhere)."""
        while True:
            with self._lock:
                if not self._unsent:
                    self._feeder = None
                    closing = self._closed_here
                    break
                data = self._unsent[0]
            try:
                # Waits in slices, to see whether the items were dropped meanwhile (`flush_feeders`).
                run_blocking(self._send(data, time.monotonic() + _FEEDER_LOOK_INTERVAL))
            except queue.Full:
                continue  # no room yet
            except BaseException as exc:  # closed, so they can go nowhere (or a system call failed)
                with self._lock:
                    self._unsent.clear()
                    self._feeder = None
                if isinstance(exc, QueueClosedError):
                    return
                raise
            with self._lock:
                if self._unsent and self._unsent[0] is data:  # else dropped while it went out
                    self._unsent.popleft()
        if closing:
            self._shut_down()

    # -- get -----------------------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the first item, waiting for one if the queue is empty.

        Under an event loop this returns an awaitable: ``await queue.get()``. If that await is
        cancelled, no item was taken.

        Args:
            block: wait for an item (True) or raise `queue.Empty` at once (False).
            timeout: with ``block``, raise `queue.Empty` after this many seconds (None: no limit).

        Raises:
            queue.Empty: no item within the time allowed.
            QueueClosedError: the queue is closed and empty.
        """
        return dual(self._get(deadline_for(block, timeout)))

    def get_nowait(self) -> Any:
        """Remove and return the first item if there is one (never waits, in sync and async code).

        Raises:
            queue.Empty: the queue is empty.
            QueueClosedError: the queue is closed and empty.
        """
        return run_blocking(self._get(time.monotonic()))

    def _get(self, deadline: float | None) -> Op[Any]:
        while True:
            data = try_receive(self._reader)
            if data is WOULD_BLOCK:
                if not (yield Wait(self._reader_port, deadline=deadline)):
                    raise queue.Empty
                continue
            if data is END:
                raise QueueClosedError("the queue is closed and has no item left")
            give_tokens(self._slots_write)
            # Taken and unpickled with no wait in between: a cancellation cannot lose it.
            return pickle.loads(data)

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        try:
            item: T = await run_async(self._get(None))
        except QueueClosedError:
            raise StopAsyncIteration from None
        return item

    def __iter__(self) -> Iterator[T]:
        """Blocking iteration (in synchronous code): the items until the queue is closed and drained."""
        while True:
            try:
                yield run_blocking(self._get(None))
            except QueueClosedError:
                return

    # -- state ---------------------------------------------------------------------------------

    def qsize(self) -> int:
        """The approximate number of items in the queue (others may put or get meanwhile); of the
        items an unbounded queue keeps in the processes that put them, only this process's count."""
        return max(0, self._slots - bytes_readable(self._slots_read)) + len(self._unsent)

    def empty(self) -> bool:
        """Whether the queue holds no item right now (approximate, like `qsize`)."""
        return bytes_readable(self._reader.fileno()) == 0 and not self._unsent

    def full(self) -> bool:
        """Whether a bounded queue has no free slot right now (approximate, like `qsize`)."""
        return self._maxsize > 0 and bytes_readable(self._slots_read) == 0

    def close(self) -> None:
        """Close the queue for every process: ``put`` now raises `QueueClosedError` everywhere,
        and ``get`` returns the items already in the queue, then raises it (``async for`` and
        ``for`` loops end). Idempotent; never waits.

        Items of an unbounded queue that this process put and still holds go first: ``put``
        here raises at once, and the queue closes for the other processes once they are sent.

        The descriptors stay open in this process until the queue is garbage-collected, so
        consumers here can still drain it.
        """
        with self._lock:
            self._closed_here = True
            if self._unsent:
                return  # the feeder shuts the queue down after the last of them
        self._shut_down()

    def _shut_down(self) -> None:
        with contextlib.suppress(OSError):  # already shut down
            self._writer.shutdown(socket.SHUT_RDWR)
        # Wake producers that wait for a free slot: they take one and find the queue closed.
        give_tokens(self._slots_write, self._slots)


# The queues that have had a feeder in this process. A process forked from it (multiprocessing's
# fork context, a task's os.fork) has none of its threads: there, the items they hold are this
# process's to send, and the child's own puts must not wait behind them for a feeder that does
# not run (nor on a lock one held).
_feeding: weakref.WeakSet[Queue[Any]] = weakref.WeakSet()


def flush_feeders(timeout: float) -> int:
    """Wait up to ``timeout`` seconds for this process's feeders to send the items they hold,
    then drop what is left (its feeders end soon after, so the process can exit); how many items
    were dropped. For a process about to exit: a pool worker that stops."""
    deadline = time.monotonic() + timeout
    for q in list(_feeding):
        feeder = q._feeder
        if feeder is not None:
            feeder.join(max(0.0, deadline - time.monotonic()))
    dropped = 0
    for q in list(_feeding):
        with q._lock:
            dropped += len(q._unsent)
            q._unsent.clear()
    return dropped


def _forget_feeders() -> None:
    for q in _feeding:
        q._lock = threading.Lock()
        q._unsent = deque()
        q._feeder = None
    _feeding.clear()


os.register_at_fork(after_in_child=_forget_feeders)


def _rebuild(handles: Handles, maxsize: int, slots: int) -> Queue[Any]:
    rebuilt: Queue[Any] = Queue.__new__(Queue)
    rebuilt._setup(handles, maxsize, slots)
    return rebuilt
