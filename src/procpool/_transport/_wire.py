"""Wire format between the parent and a worker: length-prefixed frames.

Every frame is ``header + body``. The header carries the body length, the frame kind and the
task id, so the parent routes a frame to its task before decoding the body: a body that fails
to decode fails only its own task. Stdlib only: workers import it.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from ._buffers import Body as Body  # a frame's body: what a table of out-of-band buffers may lead
from ._buffers import Received, receive_descriptor, received, table_size

HEADER = struct.Struct("<QBQ")  # body length, kind, task id
CALL_PREFIX = struct.Struct("<QQQ")  # function id, function id the worker may forget, len(function)
CREDIT_BODY = struct.Struct("<I")  # how many more stream items the worker may send
_CALL_HEAD = struct.Struct(HEADER.format + CALL_PREFIX.format[1:])  # a small call's header and prefix, packed at once
TIMING = struct.Struct("<dd")  # ends a RESULT or ERROR body: when the task started and finished (monotonic)
PROGRESS_BODY = struct.Struct("<dd")  # done, total (NaN: unknown)
STARTED = struct.Struct("<Q")  # in memory shared with the parent: the task the worker began last

# Parent -> worker.
CALL = 1
STREAM = 6  # like CALL, for a function that returns an iterator: its items come back one by one
CREDIT = 7
CLOSE = 8  # stop the stream: close the generator in the worker
CANCEL = 10  # skip this task if it has not started
# Worker -> parent.
READY = 2
INIT_FAILED = 3
RESULT = 4  # also ends a stream
ERROR = 5
ITEM = 9
CANCELLED = 11  # the task was skipped, as asked
UNMAPPED = 15  # just ahead of a task's RESULT or ERROR: the worker maps its arguments' buffers no more
# Worker -> parent, reports besides results, at any time (task id 0: between tasks).
LOG = 12  # a logging record
OUTPUT = 13  # text written to sys.stdout or sys.stderr: one byte for which, then UTF-8
PROGRESS = 14  # `report_progress` from the running task
REPORTS = frozenset({LOG, OUTPUT, PROGRESS})
# Added to a frame's kind: its body starts with the table of its out-of-band buffers, whose memory
# file's descriptor was sent ahead of it on the channel's companion socket (see `_buffers`).
BUFFERS = 0x80

_SMALL_FRAME = 64 * 1024
JOIN_LIMIT = 256 * 1024  # frames up to this size in all are joined and written in one system call
_READ_SIZE = 256 * 1024


class Frame(NamedTuple):
    kind: int
    task_id: int
    body: Body  # a large frame's body stays in the buffer it was read into
    buffers: Received | None = None  # its out-of-band buffers: give them to `_buffers.loads`


_new_frame = tuple.__new__


def encode(kind: int, task_id: int, *parts: bytes) -> list[bytes]:
    """A frame as a list of buffers; small frames are joined so they go out in one system call."""
    size = sum(map(len, parts))
    header = HEADER.pack(size, kind, task_id)
    if size <= _SMALL_FRAME:
        return [b"".join((header, *parts))]
    return [header, *parts]


def encode_call(
    kind: int, task_id: int, fn_id: int, forget_id: int, fn_bytes: bytes, args_bytes: bytes, table: bytes = b""
) -> list[bytes]:
    """A CALL or STREAM frame. ``fn_bytes`` is empty when the worker already caches ``fn_id``;
    ``table``, if any, describes the arguments' out-of-band buffers."""
    if table:
        prefix = CALL_PREFIX.pack(fn_id, forget_id, len(fn_bytes))
        return encode(kind | BUFFERS, task_id, table, prefix, fn_bytes, args_bytes)
    size = CALL_PREFIX.size + len(fn_bytes) + len(args_bytes)
    if size <= _SMALL_FRAME:  # `encode`'s own way, inline, with the prefix in the header's pack
        return [b"".join((_CALL_HEAD.pack(size, kind, task_id, fn_id, forget_id, len(fn_bytes)), fn_bytes, args_bytes))]
    return encode(kind, task_id, CALL_PREFIX.pack(fn_id, forget_id, len(fn_bytes)), fn_bytes, args_bytes)


def encode_credit(task_id: int, count: int) -> list[bytes]:
    return encode(CREDIT, task_id, CREDIT_BODY.pack(count))


class FrameBuffer:
    """Reads frames from a channel, many at a time.

    Small frames come in large reads, into one buffer kept for every read, and are split out;
    the body of a large frame is read straight into a buffer of its size, so a large payload is
    copied once on its way in. A frame with out-of-band buffers takes their descriptor from
    ``companion`` (the channel's socket for descriptors) as it is read, so each such frame gets
    the one its sender sent ahead of it.
    """

    def __init__(self, companion: socket.socket | None = None) -> None:
        self._companion = companion
        # A read's buffer made for each read (``recv``) is one the C library maps and unmaps
        # (it is that large): 20 µs more per read than reading into this one.
        self._incoming = memoryview(bytearray(_READ_SIZE))
        self._partial = bytearray()  # the start of a frame that a read left incomplete
        self._large: bytearray | None = None  # the body being read straight in
        self._large_filled = 0
        self._large_header = (0, 0)  # its kind and task id

    def read(self, sock: socket.socket) -> list[Frame] | None:
        """The frames completed by one read (maybe none yet); None at end of file.

        Raises:
            BlockingIOError: a non-blocking ``sock`` has nothing to read.
        """
        large = self._large
        if large is not None:
            with memoryview(large) as view:
                count = sock.recv_into(view[self._large_filled :])
            if not count:
                return None
            self._large_filled += count
            if self._large_filled < len(large):
                return []
            self._large = None
            kind, task_id = self._large_header
            if kind & BUFFERS:
                return [self._with_buffers(kind, task_id, large)]
            return [Frame(kind, task_id, large)]
        count = sock.recv_into(self._incoming)
        if not count:
            return None
        partial = self._partial
        if partial:
            partial += self._incoming[:count]
            with memoryview(partial) as data:
                frames, split = self._split(data)
            del partial[:split]  # bytearray drops a prefix without moving the rest
        else:
            frames, split = self._split(self._incoming[:count])
            partial += self._incoming[split:count]
        return frames

    def _split(self, data: memoryview) -> tuple[list[Frame], int]:
        """The whole frames at the start of ``data``, and how many of its bytes they (and the
        start of a large frame's body, which goes to the buffer it is read into) took."""
        frames: list[Frame] = []
        append, unpack, header_size = frames.append, HEADER.unpack_from, HEADER.size  # once per read, not per frame
        start, available = 0, len(data)
        while available - start >= header_size:
            size, kind, task_id = unpack(data, start)
            body_start = start + header_size
            end = body_start + size
            if end > available:
                if size > _READ_SIZE:  # large: read the rest of its body straight into place
                    received = data[body_start:]
                    self._large = bytearray(size)
                    self._large[: len(received)] = received
                    self._large_filled = len(received)
                    self._large_header = (kind, task_id)
                    start = available
                break
            body = bytes(data[body_start:end])
            start = end
            # `tuple.__new__` spares a Python call of the named tuple's own (one per frame).
            append(
                self._with_buffers(kind, task_id, body)
                if kind & BUFFERS
                else _new_frame(Frame, (kind, task_id, body, None))
            )
        return frames, start

    def _with_buffers(self, kind: int, task_id: int, body: Body) -> Frame:
        if self._companion is None:
            raise ConnectionResetError("a frame came with out-of-band buffers on a channel that takes none")
        buffers = received(body, receive_descriptor(self._companion))
        return Frame(kind & ~BUFFERS, task_id, memoryview(body)[table_size(body) :], buffers)
