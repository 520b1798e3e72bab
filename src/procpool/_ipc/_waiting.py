"""One way to write a blocking IPC operation, two ways to run it: blocking, or awaited.

Each operation (get an item, take a token...) is a generator that does only non-blocking system
calls and *yields* a `Wait` when it would block: "resume me when this descriptor is readable (or
writable), or at this deadline". It is sent back True (ready: try again) or False (the deadline
passed). Two drivers run such generators:

- `run_blocking` waits with ``poll()``: the face that plain, synchronous code gets;
- `run_async` waits with ``anyio.wait_readable``/``wait_writable``: the event loop is never
  blocked and no thread is used. A cancellation can only arrive at a yield, that is between two
  non-blocking steps, never in the middle of one; it is thrown into the generator, whose
  ``except``/``finally`` clauses undo what it had done so far (hand a token back...).

No wait is shielded from cancellation unless its `Wait` says so; the one that does is a
`Condition` waiter taking its lock back after a cancellation (as asyncio's and trio's conditions
do), and that wait ends when the lock's holder dies (see `_liveness`).

`dual` picks the driver: called from code running under an event loop (asyncio, uvloop, trio)
the IPC methods return an awaitable; called from synchronous code (a child process, a thread)
they block. The same objects thus work, unchanged, on both sides of a process boundary.
"""

from __future__ import annotations

import asyncio
import fcntl
import math
import mmap
import os
import struct
import sys
import termios
import time
from collections.abc import Generator
from dataclasses import dataclass
from types import CoroutineType
from typing import Any, TypeVar, cast

import anyio
import anyio.lowlevel

from .._descriptors import poll_one

T = TypeVar("T")

_INT = struct.Struct("i")


class Port:
    """A file descriptor that this process waits on.

    anyio allows one waiting task per descriptor and direction, so the tasks of this process that
    wait on the same descriptor queue on a lock, in order; other processes wait in their own way.
    """

    __slots__ = ("_locks", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._locks: list[anyio.Lock | None] = [None, None]

    def lock(self, write: bool) -> anyio.Lock:
        lock = self._locks[write]
        if lock is None:
            lock = self._locks[write] = anyio.Lock(fast_acquire=True)
        return lock


@dataclass(frozen=True, slots=True)
class Wait:
    """What an operation waits for: ``port`` readable (or writable), until ``deadline``; with
    ``shield``, an async wait goes on through a cancellation of its caller."""

    port: Port
    write: bool = False
    deadline: float | None = None  # a time.monotonic() value; None: no limit
    shield: bool = False


Op = Generator[Wait, bool, T]


def deadline_for(block: bool, timeout: float | None) -> float | None:
    """The deadline of an operation called with multiprocessing's ``block``/``timeout`` arguments.

    Raises:
        TypeError: ``timeout`` is not a number.
        ValueError: ``timeout`` is negative (or NaN).
    """
    check_timeout(timeout)
    if not block:
        return time.monotonic()  # a non-blocking call still succeeds if it need not wait
    if timeout is None:
        return None
    return time.monotonic() + timeout


def check_timeout(timeout: object) -> None:
    """Refuse a ``timeout`` that is not None or a number of seconds >= 0, with a clear error."""
    if timeout is None:
        return
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}: {timeout!r:.80}")
    if not timeout >= 0:  # NaN fails this too
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")


def running_async() -> bool:
    """Whether the calling code runs under an event loop that anyio supports (asyncio or trio).

    Asked on every call of every dual method, so it avoids anyio's exception-raising probe.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        trio = sys.modules.get("trio")
        return trio is not None and bool(trio.lowlevel.in_trio_run())
    return True


def dual(op: Op[T]) -> Any:
    """Run ``op`` the way the caller can wait: a coroutine under an event loop, else blocking.

    Called by a public method (``Queue.put``), whose name the coroutine takes, so that a
    forgotten ``await`` warns "coroutine 'Queue.put' was never awaited" (not of `run_async`), as
    it would if that method were an ``async def`` (an inherited one is named by its class).
    """
    if running_async():
        coroutine = cast("CoroutineType[Any, Any, T]", run_async(op))
        code = sys._getframe(1).f_code
        coroutine.__name__ = code.co_name
        coroutine.__qualname__ = code.co_qualname
        return coroutine
    return run_blocking(op)


def check_sync(what: str) -> None:
    """Refuse a blocking call made from async code, where it would stall the event loop.

    Raises:
        RuntimeError: the caller runs under an event loop.
    """
    if running_async():
        raise RuntimeError(f"{what} would block the event loop; in async code use `async with` instead")


# -- the drivers -------------------------------------------------------------------------------


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def ready_now(wait: Wait) -> bool:
    """Whether ``wait`` is satisfied at once (poll with a zero timeout)."""
    return poll_one(wait.port.fd, write=wait.write, timeout_ms=0)


def _advance(op: Op[T], ready: bool | None, error: BaseException | None) -> Wait:
    """The operation's next wait: it starts (``ready`` None), resumes, or gets ``error`` thrown in."""
    if error is not None:
        return op.throw(error)
    if ready is None:
        return next(op)
    return op.send(ready)


def run_blocking(op: Op[T]) -> T:
    """Run ``op`` to completion in this thread, waiting with ``poll()``."""
    ready: bool | None = None
    error: BaseException | None = None
    while True:
        try:
            wait = _advance(op, ready, error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException:
            error = None  # no cycle between this frame and the traceback that references it
            raise
        error = None
        remaining = _remaining(wait.deadline)
        try:
            timeout_ms = None if remaining is None else max(0, math.ceil(remaining * 1000))
            ready = poll_one(wait.port.fd, write=wait.write, timeout_ms=timeout_ms)
        except BaseException as exc:  # KeyboardInterrupt: let the operation undo its steps first
            error = exc


async def run_async(op: Op[T]) -> T:
    """Run ``op`` to completion, waiting on the event loop (no thread, the loop never blocks)."""
    # A checkpoint first: a cancelled caller stops here, and a consumer of a queue that is never
    # empty still lets other tasks run. After it, what the operation takes is returned with no
    # await in between, so a cancellation cannot lose it.
    await anyio.lowlevel.checkpoint()
    ready: bool | None = None
    error: BaseException | None = None
    while True:
        try:
            wait = _advance(op, ready, error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except BaseException:
            error = None  # no cycle between this frame and the traceback that references it
            raise
        error = None
        try:
            ready = await _wait_async(wait)
        except BaseException as exc:
            error = exc


async def _wait_async(wait: Wait) -> bool:
    remaining = _remaining(wait.deadline)
    if remaining is not None and remaining <= 0:
        return ready_now(wait)
    if remaining is None and not wait.shield:  # the common case, without a cancel scope to set up
        await _wait_port(wait)
        return True
    with anyio.move_on_after(remaining, shield=wait.shield):
        await _wait_port(wait)
        return True
    return False


async def _wait_port(wait: Wait) -> None:
    async with wait.port.lock(wait.write):
        if wait.write:
            await anyio.wait_writable(wait.port.fd)
        else:
            await anyio.wait_readable(wait.port.fd)


# -- descriptors -------------------------------------------------------------------------------


def bytes_readable(fd: int) -> int:
    """How many bytes a read on ``fd`` would return now (``FIONREAD``)."""
    result = fcntl.ioctl(fd, termios.FIONREAD, b"\0" * _INT.size)
    count: int = _INT.unpack(result)[0]
    return count


def token_pipe(tokens: int | None, what: str) -> tuple[int, int, int]:
    """A non-blocking pipe holding ``tokens`` bytes (None: as many as it holds): a counter that
    other processes can share. Returns both ends and the number of tokens put in.

    Every process that uses it reads and writes without blocking and waits with poll (or the event
    loop), so that the descriptors' shared O_NONBLOCK flag is the same for all of them.

    Raises:
        ValueError: the pipe cannot hold that many tokens.
    """
    read_fd, write_fd = os.pipe()
    try:
        for fd in (read_fd, write_fd):
            os.set_blocking(fd, False)
        # A pipe buffers whole pages: tokens taken from the first page and given back to the last
        # one can occupy one page more than their bytes, so two pages stay free for the give-backs
        # never to find the pipe full.
        headroom = 2 * mmap.PAGESIZE
        capacity = _pipe_capacity(write_fd)
        if tokens is None:
            tokens = capacity // 2
        elif tokens + headroom > capacity:
            set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
            try:
                if set_size is None or tokens > 2**30:
                    raise OSError("pipe sizes are fixed on this platform")
                fcntl.fcntl(write_fd, set_size, tokens + headroom)
            except OSError as exc:
                limit = _pipe_max_size() - headroom
                raise ValueError(f"{what} is too large for this system: at most {limit}") from exc
        if tokens:
            os.write(write_fd, b"\0" * tokens)
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    return read_fd, write_fd, tokens


def _pipe_max_size() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65536


def _pipe_capacity(fd: int) -> int:
    get_size = getattr(fcntl, "F_GETPIPE_SZ", None)
    if get_size is None:
        return 16384  # the smallest pipe buffer among the systems we run on (macOS)
    capacity: int = fcntl.fcntl(fd, get_size)
    return capacity


def take_token(fd: int) -> bool:
    """Take one token from a token pipe without waiting; False if there is none."""
    try:
        return bool(os.read(fd, 1))
    except BlockingIOError:
        return False


def give_tokens(fd: int, count: int = 1) -> int:
    """Put up to ``count`` tokens into a token pipe without waiting; how many fitted."""
    try:
        return os.write(fd, b"\0" * count)
    except BlockingIOError:
        return 0


def take_token_op(port: Port, deadline: float | None, shield: bool = False) -> Op[bool]:
    """Take one token, waiting for it until ``deadline``; False if the deadline passed."""
    while not take_token(port.fd):
        if not (yield Wait(port, deadline=deadline, shield=shield)):
            return False
    return True
