"""The child side of the raw-pipe reference: answer pickled calls on stdin with pickles on stdout.

Run as ``python -m benchmarks.rawpipe_child``. Stdlib only, so the child starts as fast as Python can.
A frame is an 8-byte big-endian length and a pickle: ``(call_id, fn, args)`` in,
``(call_id, ok, value)`` out. Every complete frame read in one go is answered with one write.
"""

from __future__ import annotations

import os
import pickle
import struct

HEADER = struct.Struct("!Q")
READ_SIZE = 1 << 20


def serve(read_fd: int, write_fd: int) -> None:
    """Answer calls until ``read_fd`` reaches end of file."""
    buffer = bytearray()
    incoming = bytearray(READ_SIZE)  # one buffer for every read: a new one each time costs a map and unmap
    while count := os.readv(read_fd, [incoming]):
        buffer += memoryview(incoming)[:count]
        replies: list[bytes] = []
        offset = 0
        with memoryview(buffer) as view:
            while len(buffer) - offset >= HEADER.size:
                (size,) = HEADER.unpack_from(view, offset)
                end = offset + HEADER.size + size
                if len(buffer) < end:
                    break
                call_id, fn, args = pickle.loads(view[offset + HEADER.size : end])
                offset = end
                try:
                    reply = (call_id, True, fn(*args))
                except Exception as exc:
                    reply = (call_id, False, exc)
                body = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
                replies += (HEADER.pack(len(body)), body)
        del buffer[:offset]
        if replies:
            out = memoryview(b"".join(replies))
            while out:
                out = out[os.write(write_fd, out) :]


if __name__ == "__main__":
    serve(0, 1)
