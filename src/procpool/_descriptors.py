"""Descriptor helpers that the engine and the IPC objects share: an anonymous memory file, and
a look at whether one descriptor is ready."""

from __future__ import annotations

import os
import select
import tempfile


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


def poll_one(fd: int, *, write: bool, timeout_ms: int | None) -> bool:
    """Whether ``fd`` is ready to read (or write) within ``timeout_ms`` (None: no limit).

    poll, not select: select refuses descriptors numbered 1024 and above, which a server with many
    connections open gives its pool. Hang-up and error also count as ready: the operation that
    follows reports them."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    return bool(poller.poll(timeout_ms))
