"""`Pipe`: two connected `Connection` ends, blocking in synchronous code, awaitable in async code.

Each end is a ``SOCK_SEQPACKET`` socket (see `_message`): messages stay whole, large ones travel
as memory files, and the end of file (every copy of the other end closed) ends an iteration.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from ._fdshare import Handles
from ._message import END, WOULD_BLOCK, dumps, send_op, socket_pair, try_receive
from ._waiting import Op, Port, Wait, deadline_for, dual, ready_now, run_async, run_blocking, running_async

T = TypeVar("T")


def Pipe(duplex: bool = True) -> tuple[Connection[Any], Connection[Any]]:
    """Two connected ends, like ``multiprocessing.Pipe``.

    Args:
        duplex: both ends send and receive (True), or the first end only receives and the
            second only sends (False).

    Returns:
        The two `Connection` ends. Give one to a child and, as with multiprocessing, close this
        process's copy of it, so that the end of file reaches the other end when the child exits.

    Raises:
        TypeError: ``duplex`` is not a bool.
    """
    if not isinstance(duplex, bool):
        raise TypeError(f"duplex must be True or False, not {duplex!r:.80}")
    first, second = socket_pair()
    if not duplex:
        first.shutdown(socket.SHUT_WR)
    return Connection(Handles([first]), readable=True, writable=duplex), Connection(
        Handles([second]), readable=duplex, writable=True
    )


class Connection(Generic[T]):
    """One end of a `Pipe`. Pass it to a child like any argument.

    In synchronous code ``send``/``recv``/``poll`` block; under an event loop they return
    awaitables that never block the loop; ``async for message in conn`` (or ``for`` in
    synchronous code) receives until the end of file.
    """

    def __init__(self, handles: Handles, *, readable: bool, writable: bool) -> None:
        self._handles = handles
        (self._sock,) = handles.sockets
        self._port = Port(self._sock.fileno())
        self._readable = readable
        self._writable = writable

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (self._handles, self._readable, self._writable)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<procpool.Connection {state} readable={self._readable} writable={self._writable}>"

    @property
    def closed(self) -> bool:
        """Whether this end is closed in this process."""
        return self._handles.closed

    @property
    def readable(self) -> bool:
        """Whether this end can receive."""
        return self._readable

    @property
    def writable(self) -> bool:
        """Whether this end can send."""
        return self._writable

    def fileno(self) -> int:
        """The end's file descriptor (readable when a message or the end of file is waiting)."""
        self._check(None)
        return self._sock.fileno()

    def _check(self, direction: str | None) -> None:
        if self.closed:
            raise OSError("the connection is closed")
        if direction == "send" and not self._writable:
            raise OSError("this end of a one-way Pipe only receives")
        if direction == "recv" and not self._readable:
            raise OSError("this end of a one-way Pipe only sends")

    # -- sending -------------------------------------------------------------------------------

    def send(self, obj: T) -> Any:
        """Send ``obj`` to the other end (an awaitable under an event loop).

        Raises:
            BrokenPipeError: the other end is closed.
            SerializationError: ``obj`` cannot be pickled.
            OSError: this end is closed, or only receives.
        """
        self._check("send")
        return dual(self._send(dumps(obj)))

    def send_bytes(self, data: bytes) -> Any:
        """Send raw bytes; the other end reads them with `recv_bytes` (an awaitable under a loop)."""
        self._check("send")
        return dual(self._send(bytes(data)))

    def _send(self, data: bytes) -> Op[None]:
        yield from send_op(self._sock, self._port, data, None)

    # -- receiving -----------------------------------------------------------------------------

    def recv(self) -> Any:
        """Receive the next object (an awaitable under an event loop); a cancelled await took nothing.

        Raises:
            EOFError: the other end is closed and nothing is left to receive.
            OSError: this end is closed, or only sends.
        """
        self._check("recv")
        return dual(self._receive(raw=False))

    def recv_bytes(self) -> Any:
        """Receive the next message sent with `send_bytes`, as bytes (an awaitable under a loop).

        Raises:
            EOFError: the other end is closed and nothing is left to receive.
        """
        self._check("recv")
        return dual(self._receive(raw=True))

    def _receive(self, *, raw: bool) -> Op[Any]:
        while True:
            data = try_receive(self._sock)
            if data is WOULD_BLOCK:
                yield Wait(self._port)
                continue
            if data is END:
                raise EOFError("the other end of the pipe is closed")
            return bytes(data) if raw else pickle.loads(data)

    def poll(self, timeout: float | None = 0.0) -> Any:
        """Whether a message (or the end of file) is waiting, after waiting up to ``timeout``
        seconds (None: no limit). An awaitable under an event loop."""
        self._check("recv")
        return dual(self._poll(deadline_for(True, timeout)))

    def _poll(self, deadline: float | None) -> Op[bool]:
        wait = Wait(self._port, deadline=deadline)
        if ready_now(wait):
            return True
        return (yield wait)

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        self._check("recv")
        try:
            message: T = await run_async(self._receive(raw=False))
        except EOFError:
            raise StopAsyncIteration from None
        return message

    def __iter__(self) -> Iterator[T]:
        """Blocking iteration (in synchronous code): the messages until the end of file."""
        self._check("recv")
        while True:
            try:
                yield run_blocking(self._receive(raw=False))
            except EOFError:
                return

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close this end in this process (idempotent). Tasks of this process waiting on it get
        ``anyio.ClosedResourceError``; the other end sees the end of file once every copy of this
        one (in every process) is closed."""
        if not self.closed and running_async():
            anyio.notify_closing(self._sock)
        self._handles.close()

    def __enter__(self) -> Connection[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _rebuild(handles: Handles, readable: bool, writable: bool) -> Connection[Any]:
    return Connection(handles, readable=readable, writable=writable)
