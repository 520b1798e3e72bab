"""Descriptor helpers that the engine, the transport and the IPC objects share: an anonymous
memory file (made, filled, read), and a look at whether one descriptor is ready."""

from __future__ import annotations

import os
import select
import tempfile
from collections.abc import Sequence


def shared_memory(size: int, name: str) -> int:
    """A descriptor of ``size`` zeroed bytes that processes can map (pages are allocated when used):
    a memfd, or an unlinked temporary file (mode 0600) where there is none; ``name`` shows in /proc."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd: int = memfd_create(name, os.MFD_CLOEXEC)
    else:
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def filled(fd: int, buffers: Sequence[memoryview], offsets: Sequence[int]) -> int:
    """``fd``, a memory file, with each of ``buffers`` written at its offset (`write_at`); the
    file is closed if that fails."""
    try:
        write_at(fd, buffers, offsets)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_at(fd: int, buffers: Sequence[memoryview], offsets: Sequence[int]) -> None:
    """Write each of ``buffers`` (contiguous, bytes) into the file ``fd`` at its offset. With
    pwrite, not through a mapping: the kernel fills the pages, with no page fault in this
    process, and the file's pages never count in its resident memory."""
    for buffer, offset in zip(buffers, offsets, strict=True):
        view, at = buffer, offset
        while view:
            written = os.pwrite(fd, view, at)
            view, at = view[written:], at + written


def read_into(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from the file ``fd`` at ``offset``.

    Raises:
        ConnectionError: the file ends first (truncated by its sender).
    """
    done = 0
    while done < len(view):
        count = os.preadv(fd, [view[done:]], offset + done)
        if count == 0:
            raise ConnectionError("a memory file sent by another process was truncated")
        done += count


def poll_one(fd: int, *, write: bool, timeout_ms: int | None) -> bool:
    """Whether ``fd`` is ready to read (or write) within ``timeout_ms`` (None: no limit).

    poll, not select: select refuses descriptors numbered 1024 and above, which a server with many
    connections open gives its pool. Hang-up and error also count as ready: the operation that
    follows reports them."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    return bool(poller.poll(timeout_ms))
