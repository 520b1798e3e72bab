"""The raw-pipe reference: the least a process pool can do, to show what procpool could reach.

Pre-started children (`benchmarks.rawpipe_child`) answer pickles over a pair of pipes each; the
parent writes calls without blocking and reads replies with ``loop.add_reader``. There is no task
tracking beyond a dict of futures, no crash handling, no cancellation, no batching in the parent:
only what any pool needs to carry one call there and its result back. asyncio (and uvloop) only.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import os
import pickle
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

from .rawpipe_child import HEADER, READ_SIZE

PIPE_SIZE = 1 << 20  # the default /proc/sys/fs/pipe-max-size: fewer wake-ups for large payloads
IOV_MAX = 1024
ROOT = Path(__file__).resolve().parent.parent


class RawPipeChild:
    """One child process and the parent's end of its two pipes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.rawpipe_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            cwd=ROOT,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._write_fd = self.process.stdin.fileno()
        self._read_fd = self.process.stdout.fileno()
        for fd in (self._write_fd, self._read_fd):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            os.set_blocking(fd, False)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._unsent: deque[memoryview] = deque()
        self._received = bytearray()
        self._incoming = bytearray(READ_SIZE)  # one buffer for every read, as the child's
        loop.add_reader(self._read_fd, self._on_readable)

    def call(self, fn: Any, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Send ``fn(*args)`` to the child; the future gets its result."""
        call_id = next(self._ids)
        body = pickle.dumps((call_id, fn, args), pickle.HIGHEST_PROTOCOL)
        future = self._loop.create_future()
        self.pending[call_id] = future
        was_idle = not self._unsent
        self._unsent += (memoryview(HEADER.pack(len(body))), memoryview(body))
        if was_idle:
            self._flush()
            if self._unsent:
                self._loop.add_writer(self._write_fd, self._flush)
        return future

    def _flush(self) -> None:
        try:
            written = os.writev(self._write_fd, list(itertools.islice(self._unsent, IOV_MAX)))
        except BlockingIOError:
            return
        while written:
            head = self._unsent[0]
            if written < len(head):
                self._unsent[0] = head[written:]
                return
            written -= len(head)
            self._unsent.popleft()
        if not self._unsent:
            self._loop.remove_writer(self._write_fd)

    def _on_readable(self) -> None:
        try:
            count = os.readv(self._read_fd, [self._incoming])
        except BlockingIOError:
            return
        if not count:
            self._loop.remove_reader(self._read_fd)
            for future in self.pending.values():
                future.set_exception(EOFError(f"raw-pipe child {self.process.pid} exited"))
            self.pending.clear()
            return
        received = self._received
        received += memoryview(self._incoming)[:count]
        offset = 0
        with memoryview(received) as view:
            while len(received) - offset >= HEADER.size:
                (size,) = HEADER.unpack_from(view, offset)
                end = offset + HEADER.size + size
                if len(received) < end:
                    break
                call_id, ok, value = pickle.loads(view[offset + HEADER.size : end])
                offset = end
                future = self.pending.pop(call_id)
                if future.done():  # the caller was cancelled; the reply is dropped
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        del received[:offset]

    async def close(self) -> None:
        """Close the child's stdin (it exits at end of file) and wait for it."""
        self._loop.remove_reader(self._read_fd)
        self._loop.remove_writer(self._write_fd)
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        await asyncio.to_thread(self.process.wait)
        self.process.stdout.close()


class RawPipePool:
    """``workers`` raw-pipe children; each call goes to the child with the fewest calls pending."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._children: list[RawPipeChild] = []

    def start(self) -> None:
        """Start the children (from the running event loop's thread)."""
        loop = asyncio.get_running_loop()
        self._children = [RawPipeChild(loop) for _ in range(self._workers)]

    def call(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in a child; await the returned future for the result."""
        child = min(self._children, key=lambda c: len(c.pending))
        return child.call(fn, args)

    async def close(self) -> None:
        """Stop every child and wait for them."""
        for child in self._children:
            await child.close()
