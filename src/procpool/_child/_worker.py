"""The worker process's main loop. It uses only the stdlib, cloudpickle and `_wire`, so the same
entry point can serve another way of starting processes.

A worker reads CALL frames from its private channel, runs them one at a time and answers with a
RESULT or ERROR frame. It exits when the channel reaches end of file (the pool closed it), and the
kernel kills it when its lifeline reaches end of file (the owner died), even while a task runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from multiprocessing import reduction
from typing import TYPE_CHECKING, Any

from .._transport import (
    Description,
    Spilled,
    dumps,
    dumps_for_transport,
    dumps_with_buffers_for_transport,
    loads,
    pack_exception,
    send_descriptor,
    wire,
)
from . import _reports
from ._call import END, call, complete, describe, item_source, new_event_loop

if TYPE_CHECKING:
    import asyncio  # imported for the first coroutine a task runs (see `loop_runner`)

# Sent by the parent after CANCEL frames that take back tasks waiting behind a long one, so
# that the worker reads them while that task runs, and answers at once. SIGURG, whose default
# action is to be ignored: a task that resets every handler loses taking back, not its worker.
TAKE_BACK_SIGNAL: int | None = getattr(signal, "SIGURG", None)
_BATCH_TASK_TIME = 50e-6
_BATCH_SIZE = 64
_SMOOTHING = 0.2
# An idle worker whose calls have been coming quickly polls this long for the next before it
# sleeps: waking a sleeping process costs the waker and the woken tens of µs (measured: see `_Inbox.wait`).
_SPIN_SECONDS = 200e-6
_QUICK_CALLS = 2  # calls in a row, each come within `_SPIN_SECONDS` of the wait for it, before a worker polls


def _lead_own_group() -> bool:
    """Become the leader of a new session and process group, so that stopping this worker can
    signal every process a task started (``os.killpg``); True if it worked."""
    try:
        os.setsid()
    except OSError:  # already a group leader: started by something other than multiprocessing
        return False
    return True


def arm_lifeline(lifeline: socket.socket, *, whole_group: bool = False) -> None:
    """Have the kernel kill this process when the owner's end of ``lifeline`` closes (see
    `kill_at_end_of_file`). With ``whole_group`` the signal goes to the worker's process group:
    the processes its tasks started (and did not move to a group of their own) die with it."""
    kill_at_end_of_file(lifeline.fileno(), -os.getpid() if whole_group else os.getpid())
    signal.signal(signal.SIGIO, signal.SIG_DFL)  # where the signal is SIGIO (no F_SETSIG)


def kill_at_end_of_file(fd: int, owner: int) -> None:
    """Have the kernel signal ``owner`` (a pid, or minus a process group's id) when ``fd``, a
    lifeline nothing is written to, becomes readable: at end of file, once every holder of its
    other end has exited, so at the owner's death.

    The signal is SIGKILL where ``F_SETSIG`` chooses it (Linux): a task cannot ignore, block or
    handle it, as it can SIGIO, the signal otherwise, whose default action terminates too. Either
    needs no GIL: a worker stuck in C code dies as well.
    """
    fcntl.fcntl(fd, fcntl.F_SETOWN, owner)
    set_signal = getattr(fcntl, "F_SETSIG", None)
    if set_signal is not None:
        fcntl.fcntl(fd, set_signal, signal.SIGKILL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)


class _Inbox:
    """Frames from the parent, read in large chunks: one system call brings many small tasks."""

    def __init__(self, channel: socket.socket, companion: socket.socket | None, *, may_poll: bool) -> None:
        self.channel = channel
        self.frames: deque[wire.Frame] = deque()
        self.closed = False  # the parent closed the channel
        self._buffer = wire.FrameBuffer(companion)
        self._cancels = False
        # Asked before every task whether more has come: a poll object registered once costs half
        # of a select() call, and tiny tasks pay it each.
        self._readable = select.poll()
        self._readable.register(channel, select.POLLIN)
        self._may_poll = may_poll  # the machine has a CPU for every worker (see `wait`)
        self._quick_calls = 0  # calls in a row that came within `_SPIN_SECONDS` (see `wait`)

    def fill(self, *, wait: bool) -> None:
        """Read what has arrived; with ``wait``, wait for something first."""
        if self.closed or (not wait and not self._readable.poll(0)):
            return
        frames = self._buffer.read(self.channel)
        if frames is None:
            self.closed = True
            return
        for frame in frames:
            self._cancels = self._cancels or frame.kind == wire.CANCEL
            self.frames.append(frame)

    def wait(self) -> None:
        """Wait for the parent's next frames and read them.

        Sleeping costs: a round trip of a tiny call took 125-148 µs when the worker slept between
        calls, and 79-86 µs when it polled for them instead (A's load, calls one after another,
        on 2 CPUs under gVisor, where the parent's send that wakes a sleeping worker takes 13 µs
        against 3 µs). So once `_QUICK_CALLS` calls in a row have come within
        `_SPIN_SECONDS` of the wait for them, the wait polls for that long before it sleeps;
        one later than that stops the polling until calls come quickly again. Sporadic calls
        never make a worker poll, and a poll that finds nothing costs it `_SPIN_SECONDS` once.
        A pool with more workers than CPUs never polls: the CPU would be taken from the others.
        """
        start = time.perf_counter()
        if self._may_poll and self._quick_calls >= _QUICK_CALLS:
            poll, clock, end = self._readable.poll, time.perf_counter, start + _SPIN_SECONDS
            while not poll(0) and clock() < end:
                pass
        self.fill(wait=True)
        self._quick_calls = self._quick_calls + 1 if time.perf_counter() - start <= _SPIN_SECONDS else 0

    def next_task(self, skipped: Callable[[wire.Frame], None]) -> wire.Frame | None:
        """The next CALL or STREAM frame, if one has arrived. Tasks the parent cancelled before
        they started are dropped, and reported through ``skipped``."""
        self.drop_cancelled(skipped)
        while self.frames:
            frame = self.frames.popleft()
            if frame.kind in (wire.CALL, wire.STREAM):
                return frame
            # Otherwise a stream's CREDIT or CLOSE that crossed its end: nothing to do.
        return None

    def drop_cancelled(self, skipped: Callable[[wire.Frame], None]) -> None:
        """Drop the tasks that CANCEL frames name, reporting each through ``skipped``."""
        if not self._cancels:
            return
        self._cancels = False
        cancelled = {frame.task_id for frame in self.frames if frame.kind == wire.CANCEL}
        kept: deque[wire.Frame] = deque()
        for frame in self.frames:
            if frame.kind == wire.CANCEL:
                continue
            if frame.task_id in cancelled and frame.kind in (wire.CALL, wire.STREAM):
                skipped(frame)
                continue
            kept.append(frame)
        self.frames = kept


class _Worker:
    def __init__(
        self,
        channel: socket.socket,
        started: mmap.mmap | None = None,
        companion: socket.socket | None = None,
        buffer_threshold: int | None = None,
        *,
        may_poll: bool = False,
    ) -> None:
        self.channel = channel
        self.started = started  # shared with the parent: the id of the task this worker began last
        # Where the descriptors of large buffers go, both ways, and how large they must be to go
        # there rather than in the pickle (None: never).
        self.companion = companion
        self.buffer_threshold = buffer_threshold if companion is not None else None
        self.inbox = _Inbox(channel, companion, may_poll=may_poll)
        self.functions: dict[int, Callable[..., Any] | bytes] = {}
        self.runner: asyncio.Runner | None = None
        self.unsent: list[bytes] = []  # finished tasks' frames, sent together (see `serve`)
        self.task_time = 1.0  # recent average seconds per task; starts high: no batching at first
        self.last_fn_id = 0  # the function of the last task started
        self._write_lock = threading.RLock()  # a task's threads may log or print while a result goes out
        self._main_thread = threading.get_ident()
        # Taking back waiting tasks while one runs (see `TAKE_BACK_SIGNAL`): the signal's handler
        # runs in the main thread, so it acts only while the task's own code runs there, never
        # inside this worker's channel or inbox work (``_io_depth``); else once that is done.
        self._running_task = False
        self._io_depth = 0
        self._take_back_pending = False
        self.reporter = _reports.Reporter(self.write)

    def write(self, buffers: list[bytes]) -> None:
        """Write frames to the parent, reading what it sends meanwhile.

        A blocking write would deadlock with a parent that is itself blocked writing a large task
        (sent ahead) to us: each would wait for the other to read. So a write that cannot finish
        at once waits for the channel to become writable *or* readable, and reads into the inbox.
        Only the main thread reads; a task's own threads (logging, printing) just wait.
        """
        if sum(map(len, buffers)) <= wire.JOIN_LIMIT:
            buffers = [b"".join(buffers)]
        main = threading.get_ident() == self._main_thread
        if main:
            self._io_depth += 1
        try:
            with self._write_lock:
                for buffer in buffers:
                    try:
                        sent = self.channel.send(buffer, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        sent = 0
                    if sent < len(buffer):  # rare: the parent is slow to read, or the buffer is large
                        self._write_waiting(memoryview(buffer)[sent:])
        finally:
            if main:
                self._io_depth -= 1
                if self._take_back_pending and not self._io_depth and self._running_task:
                    self._take_back()

    def on_take_back_signal(self, signum: int, frame: object) -> None:
        """The parent takes back tasks waiting here: skip them now, if this task's code runs."""
        self._take_back_pending = True
        if self._running_task and not self._io_depth:
            self._take_back()

    def _take_back(self) -> None:
        self._io_depth += 1
        try:
            while self._take_back_pending:
                self._take_back_pending = False
                self.inbox.fill(wait=False)
                self.inbox.drop_cancelled(self.skipped)
        finally:
            self._io_depth -= 1

    def _write_waiting(self, view: memoryview) -> None:
        reading = threading.get_ident() == self._main_thread
        while view:
            readers = [self.channel] if reading and not self.inbox.closed else []
            readable, _, _ = select.select(readers, [self.channel], [])
            if readable:
                self.inbox.fill(wait=False)
            with contextlib.suppress(BlockingIOError):  # select may have woken for reading only
                view = view[self.channel.send(view, socket.MSG_DONTWAIT) :]

    def send(self, kind: int, task_id: int, body: bytes = b"") -> None:
        self.write(wire.encode(kind, task_id, body))

    def function(self, fn_id: int) -> Callable[..., Any]:
        fn = self.functions[fn_id]
        if isinstance(fn, bytes):
            # Kept as bytes until it loads, so a function that fails to load fails every call.
            fn = pickle.loads(fn)
            if not callable(fn):
                raise TypeError(f"{fn!r} is not callable")
            self.functions[fn_id] = fn
        return fn

    def loop_runner(self) -> asyncio.Runner:
        """The worker's event loop, made on first use and kept: tasks' coroutines run on it."""
        if self.runner is None:
            import asyncio

            self.runner = asyncio.Runner(loop_factory=new_event_loop)
        return self.runner

    def await_result(self, awaitable: Awaitable[Any]) -> Any:
        return complete(awaitable, self.loop_runner())

    def register(self, body: wire.Body) -> tuple[int, int]:
        """Update the function cache as a call frame says; the function's id and where its
        pickled arguments start."""
        fn_id, forget_id, fn_len = wire.CALL_PREFIX.unpack_from(body)
        self.functions.pop(forget_id, None)
        start = wire.CALL_PREFIX.size
        if fn_len:
            self.functions[fn_id] = bytes(body[start : start + fn_len])
        return fn_id, start + fn_len

    def load_call(self, frame: wire.Frame) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        fn_id, args_start = self.register(frame.body)
        fn = self.function(fn_id)
        args, kwargs = loads(frame.body[args_start:], frame.buffers)
        return fn, args, kwargs

    def call(self, frame: wire.Frame) -> tuple[bytes, Spilled | None]:
        """Run a CALL frame's task: its pickled result, and the result's out-of-band buffers."""
        fn, args, kwargs = self.load_call(frame)
        self._running_task = True
        try:
            result = call(fn, args, kwargs, self.loop_runner)
        finally:
            self._running_task = False
        del args, kwargs  # their buffers are unmapped now, unless the result holds them
        return self.pickled(result, lambda: f"the result of {describe(fn)}")

    def pickled(self, value: object, what: Description) -> tuple[bytes, Spilled | None]:
        """A result or a stream's item, pickled, and its out-of-band buffers."""
        if self.buffer_threshold is None:
            return dumps_for_transport(value, what), None
        return dumps_with_buffers_for_transport(value, what, self.buffer_threshold)

    def stream(self, task_id: int, frame: wire.Frame) -> bytes:
        """Send the items of ``fn(*args, **kwargs)`` (an iterable or async iterable) one by one,
        never more than the parent granted; the generator is closed however the stream ends."""
        fn, args, kwargs = self.load_call(frame)
        self._running_task = True
        try:
            items = fn(*args, **kwargs)
            next_item, close = item_source(items, self.await_result)
            credit = 0
            try:
                while (credit := self.take_control(credit)) > 0 and (item := next_item()) is not END:
                    data, buffers = self.pickled(item, lambda: f"an item of {describe(fn)}")
                    if buffers is None:
                        self.send(wire.ITEM, task_id, data)
                    else:
                        self.send_with_buffers(wire.ITEM, task_id, buffers, data)
                    credit -= 1
            finally:
                if close is not None:
                    close()
        finally:
            self._running_task = False
        return dumps(None)

    def take_control(self, credit: int) -> int:
        """Read the parent's CREDIT and CLOSE frames: waits while ``credit`` is 0, else only
        takes what has arrived. Returns the credit, or 0 when the stream must stop.

        The parent sends no other task to a worker while it streams, so no other frame comes."""
        self._io_depth += 1
        try:
            return self._take_control(credit)
        finally:
            self._io_depth -= 1

    def _take_control(self, credit: int) -> int:
        inbox = self.inbox
        inbox.fill(wait=credit == 0 and not inbox.frames)
        while inbox.frames or credit == 0:
            if inbox.closed and not inbox.frames:
                return 0
            if not inbox.frames:
                inbox.fill(wait=True)
                continue
            frame = inbox.frames.popleft()
            if frame.kind == wire.CLOSE:
                return 0
            if frame.kind == wire.CREDIT:
                credit += wire.CREDIT_BODY.unpack(frame.body)[0]
        return credit

    def skipped(self, frame: wire.Frame) -> None:
        self.register(frame.body)  # the parent counts on the function it carried being cached
        if frame.buffers is not None:
            frame.buffers.close()
        self.flush()
        self.send(wire.CANCELLED, frame.task_id)

    def serve(self) -> None:
        inbox = self.inbox
        while True:
            inbox.fill(wait=False)  # a CANCEL for the next task may have come meanwhile
            frame = inbox.next_task(self.skipped)
            if frame is None:
                self.flush()
                if inbox.closed:
                    return
                inbox.wait()
                continue
            # Results held back for batching go now if this task calls another function: it
            # may run long, and the parent must see which task is running (to kill it on cancel).
            fn_id = wire.CALL_PREFIX.unpack_from(frame.body)[0]
            if fn_id != self.last_fn_id:
                self.last_fn_id = fn_id
                self.flush()
            if self.started is not None:
                # Before anything of the task runs, even its unpickling: if this worker dies from
                # here on, the parent knows the task started, else it gives the task to another.
                wire.STARTED.pack_into(self.started, 0, frame.task_id)
            reporter = self.reporter
            reporter.task_id = frame.task_id
            started = time.monotonic()
            task_id = frame.task_id
            result_buffers: Spilled | None = None  # those of the result (``frame.buffers``: of the arguments)
            try:
                if frame.kind == wire.STREAM:
                    self.flush()
                    outcome = wire.RESULT, self.stream(task_id, frame)
                else:
                    data, result_buffers = self.call(frame)
                    outcome = wire.RESULT, data
            except SystemExit:
                self.flush()
                raise  # sys.exit() in a task ends this worker, as it would end any process
            except BaseException as exc:
                outcome = wire.ERROR, pack_exception(exc)
            finished = time.monotonic()
            reporter.task_id = 0
            if reporter.streams:
                reporter.flush_output()  # what the task printed goes out ahead of its result
            timing = wire.TIMING.pack(started, finished)
            self.task_time += _SMOOTHING * (finished - started - self.task_time)
            if frame.buffers is not None and frame.buffers.unmapped():
                self.unsent += wire.encode(wire.UNMAPPED, task_id)  # the parent may reuse the memory file
            if result_buffers is not None:
                self.send_with_buffers(wire.RESULT, task_id, result_buffers, outcome[1], timing)
                continue
            self.unsent += wire.encode(outcome[0], task_id, outcome[1], timing)
            # Results of tiny tasks go back together while more tasks are already here: the
            # next one delays them by about as long as these took. Anything else goes at once.
            if not inbox.frames or self.task_time > _BATCH_TASK_TIME or len(self.unsent) >= _BATCH_SIZE:
                self.flush()

    def send_with_buffers(self, kind: int, task_id: int, buffers: Spilled, *parts: bytes) -> None:
        """Send a RESULT or ITEM frame whose out-of-band buffers are in ``buffers``: their
        descriptor first, on the companion socket, then the frame (at once, after any held back),
        which the parent reads only after it. The memory file is the parent's then: this worker
        closes it."""
        self.flush()
        assert self.companion is not None
        try:
            send_descriptor(self.companion, buffers.fd)
        finally:
            buffers.close()
        self.write(wire.encode(kind | wire.BUFFERS, task_id, buffers.table, *parts))

    def flush(self) -> None:
        if self.unsent:
            self.write(self.unsent)
            self.unsent.clear()

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()


def _flush_queues(timeout: float) -> None:
    """Before this worker exits: let its `procpool.Queue` feeders send what they hold, for a time
    shorter than the parent's grace (which ends in SIGTERM), then drop the rest and say so.

    The parent shut only its side of the channel down, so the warning still reaches it."""
    # A worker that never unpickled a Queue never imported its module (nor anyio with it).
    queues = sys.modules.get("procpool._ipc._queue")
    if queues is None:
        return
    dropped: int = queues.flush_feeders(timeout)
    if dropped:
        logging.getLogger("procpool").warning(
            "procpool.Queue: %d items put by worker %d were never sent: nobody read the queue before "
            "the worker stopped; keep a consumer reading, or use a bounded Queue (maxsize=...) so "
            "that put waits for room",
            dropped,
            os.getpid(),
        )


class InheritedFd:
    """A descriptor given to a process that multiprocessing starts: it arrives as a plain int.

    Pickled while the process starts, it goes the standard way (``DupFd``: inherited, or sent to
    the forkserver with the start request) rather than through a descriptor-sharing server.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Callable[[Any], int], tuple[Any]]:
        return _detach, (reduction.DupFd(self.fd),)


def _detach(dup: Any) -> int:
    fd: int = dup.detach()
    return fd


def main(
    channel: socket.socket,
    lifeline: socket.socket,
    setup: bytes,
    started_fd: int | None = None,
    companion: socket.socket | None = None,
) -> None:
    """Entry point of a worker process (the target given to ``multiprocessing``).

    ``started_fd`` is memory shared with the parent, where the worker writes the id of each task
    as it begins it. ``companion`` carries the descriptors of large buffers, both ways.
    """
    leads_group = _lead_own_group()
    arm_lifeline(lifeline, whole_group=leads_group)
    # Interrupting is the parent's to decide (Ctrl-C no longer reaches a worker in its own
    # session, but a SIGINT sent to it, or to a worker whose setsid failed, still could).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A task that forks or starts a program must not hand the channel on: a process holding it
    # once this worker has died would delay the end of file by which the parent learns of the
    # death (the parent watches the process too, for a task that hands it on anyway). The
    # descriptors arrive inheritable. A forked child prints and logs to the inherited stdout and
    # stderr instead of the channel.
    channel.set_inheritable(False)
    lifeline.set_inheritable(False)
    if companion is not None:
        companion.set_inheritable(False)
        companion.setblocking(True)
        os.register_at_fork(after_in_child=companion.close)
    os.register_at_fork(after_in_child=channel.close)
    os.register_at_fork(after_in_child=_reports.uninstall)
    channel.setblocking(True)
    started = None
    if started_fd is not None:
        try:
            started = mmap.mmap(started_fd, wire.STARTED.size)
        finally:
            os.close(started_fd)
    initializer, initargs, log_levels, forward_output, kill_grace, buffer_threshold, may_poll = pickle.loads(setup)
    worker = _Worker(channel, started, companion, buffer_threshold, may_poll=may_poll)
    if TAKE_BACK_SIGNAL is not None:
        signal.signal(TAKE_BACK_SIGNAL, worker.on_take_back_signal)
    worker.reporter = _reports.install(worker.write, log_levels, forward_output)
    try:
        if initializer is not None:
            try:
                initializer(*initargs)
            except BaseException as exc:
                worker.send(wire.INIT_FAILED, 0, pack_exception(exc))
                return
        worker.reporter.flush_output()
        worker.send(wire.READY, 0)
        # The owner arms the lifeline too as it starts a worker, for this process alone (for the
        # time it imports the main module), and owner and signal belong to the socket that both
        # share: done after the arming above, it would spare the processes a task starts. The
        # owner sends no frame before it is done, so arm again at the first, before any task runs.
        worker.inbox.fill(wait=True)
        arm_lifeline(lifeline, whole_group=leads_group)
        worker.serve()
        _flush_queues(kill_grace / 2)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the pool went away; nothing is waiting for an answer
    finally:
        worker.reporter.flush_output()
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        worker.close()
        channel.close()
        if companion is not None:
            companion.close()
