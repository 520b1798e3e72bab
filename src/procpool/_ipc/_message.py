"""Whole messages over a unix ``SOCK_SEQPACKET`` socket: the transport of `Queue` and `Pipe`.

The kernel keeps each message whole and delivers it to exactly one reader, so any number of
processes may send and receive on the same socket pair with no lock: a process killed mid-way
cannot leave half a message behind, and a reader never sees two messages glued together.

A message is one kind byte, then either the pickled object (inline) or, for a large one, its
length, with the pickle itself in a memory file passed along as a descriptor (``SCM_RIGHTS``), so
the size of an item is not limited by the socket buffer. A memory file still in flight is released
by the kernel with the socket: nothing to clean up.
"""

from __future__ import annotations

import array
import os
import pickle
import socket
import struct
from typing import Any

from .._descriptors import filled, read_into, shared_memory
from .._transport import dumps_for_transport
from ._waiting import Op, Port, Wait

_INLINE = b"\x00"
_SPILLED = b"\x01"
_SIZE = struct.Struct("<Q")
_INLINE_LIMIT = 64 * 1024
_RECEIVE_SIZE = 1 + _INLINE_LIMIT
_ANCILLARY_SIZE = socket.CMSG_SPACE(array.array("i").itemsize)
_NO_SIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_SEND_FLAGS = socket.MSG_DONTWAIT | _NO_SIGNAL
# A larger send buffer lets a queue hold more items before put() waits; the kernel caps it.
_SEND_BUFFER = 4 * 1024 * 1024

WOULD_BLOCK = object()
"""What `try_receive` returns when no message is waiting."""
END = object()
"""What `try_receive` returns at end of file: the sending side was shut down or closed."""


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of message sockets with a generous send buffer on both ends."""
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        for sock in pair:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
    except BaseException:
        for sock in pair:
            sock.close()
        raise
    return pair


def dumps(obj: object) -> bytes:
    """Pickle ``obj``: plain pickle (fast), or cloudpickle for what it cannot carry (lambdas...).

    Raises:
        SerializationError: neither can pickle it.
    """
    try:
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception:
        return dumps_for_transport(obj, f"the item {type(obj).__qualname__}")


def send_op(sock: socket.socket, port: Port, data: bytes, deadline: float | None) -> Op[bool]:
    """Send ``data`` as one message, waiting for room until ``deadline``; False if it passed.

    Raises:
        BrokenPipeError: the receiving side is shut down or closed.
    """
    spill_fd = -1
    buffers: list[bytes] = [_INLINE, data]
    ancillary: list[tuple[int, int, bytes]] = []
    if len(data) > _INLINE_LIMIT:
        spill_fd = _spill(data)
        buffers = [_SPILLED, _SIZE.pack(len(data))]
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [spill_fd]).tobytes())]
    try:
        while True:
            try:
                sock.sendmsg(buffers, ancillary, _SEND_FLAGS)
                return True
            except BlockingIOError:
                pass
            if not (yield Wait(port, write=True, deadline=deadline)):
                return False
    finally:
        if spill_fd >= 0:
            os.close(spill_fd)  # the message in flight holds its own reference to the file


def _spill(data: bytes) -> int:
    """A memory file holding ``data``."""
    return filled(shared_memory(len(data), "procpool-message"), [memoryview(data)], [0])


def try_receive(sock: socket.socket) -> Any:
    """The next message's pickled bytes, without waiting; `WOULD_BLOCK` or `END` if there is none.

    Raises:
        ConnectionError: the message is malformed (not sent by procpool).
    """
    try:
        data, ancillary, flags, _address = sock.recvmsg(_RECEIVE_SIZE, _ANCILLARY_SIZE, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return WOULD_BLOCK
    except ConnectionResetError:
        return END
    fds = [
        fd
        for level, kind, payload in ancillary
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
        for fd in array.array("i", payload[: len(payload) - len(payload) % 4])
    ]
    if not data:
        return END
    kind = data[:1]
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        kind = b""  # too large for a message that procpool sent
    if kind == _INLINE and not fds:
        return memoryview(data)[1:]
    if kind == _SPILLED and len(fds) == 1:
        (size,) = _SIZE.unpack_from(data, 1)
        return _read_spilled(fds[0], size)
    for fd in fds:
        os.close(fd)
    raise ConnectionError("received a message that procpool did not send")


def _read_spilled(fd: int, size: int) -> bytearray:
    try:
        data = bytearray(size)
        read_into(fd, memoryview(data), 0)
        return data
    finally:
        os.close(fd)
