"""The parent's handle on one worker process: start, private channel, stop, exit status."""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import mmap
import os
import signal
import socket
import sys
import time
import weakref
from collections import OrderedDict, deque
from multiprocessing import forkserver
from multiprocessing.context import BaseContext
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .._child import TAKE_BACK_SIGNAL, InheritedFd, kill_at_end_of_file, worker_main
from .._descriptors import poll_one, shared_memory
from .._errors import InitializerError, WorkerCrashedError
from .._launch import MAIN_MODULE_STARTS_POOL, WORKER_NAME, mp_lock, start_forkserver
from .._transport import send_descriptor, unpack_exception, wire
from . import _reports
from ._channel_io import ChannelIO, Step

if TYPE_CHECKING:
    from .._core import Job

_FUNCTIONS_PER_WORKER = 128
_CALL, _STREAM, _encode_call = wire.CALL, wire.STREAM, wire.encode_call  # globals: read for every call sent
_EXIT_POLL_INTERVAL = 0.002
_MAX_BUFFERS_PER_WRITE = 512  # well under the system's limit on buffers per sendmsg (IOV_MAX, 1024 on Linux)
_START_EXIT_GRACE = 1.0  # seconds a worker that closed its channel during its start gets to exit
_FORKSERVER_EXIT_WAIT = 1.0  # seconds the forkserver, its end of the start request closed, gets to exit
# The most descriptors multiprocessing holds at once while it starts a process (a forkserver's or
# resource tracker's own start included), and how often `WorkerProcess.watch` looks at a worker
# when no descriptor is free to wait on.
_START_DESCRIPTORS = 8
_EXIT_LOOK_INTERVAL = 0.05
_NO_NEW_THREAD = "can't start new thread"  # CPython's RuntimeError when the system refuses a thread
# What an error that failed a worker's start means, for `start_failed`.
_START_ERROR_HINTS = {
    errno.EMFILE: "This process has reached its limit on open files (RLIMIT_NOFILE, `ulimit -n`).",
    errno.ENFILE: "The system has reached its limit on open files.",
    errno.EAGAIN: "A limit on processes is reached (RLIMIT_NPROC, `ulimit -u`, or a cgroup's pids.max).",
    errno.ENOMEM: "There is not enough memory for a new process.",
}

_live: weakref.WeakSet[WorkerProcess] = weakref.WeakSet()


def _main_file() -> str:
    """How the errors about the main module name it: its file, where it has one."""
    return getattr(sys.modules.get("__main__"), "__file__", None) or "the main module"


def main_module_starts_pool() -> RuntimeError:
    """The error for a pool whose processes, importing the main module, found it starts a pool."""
    main = _main_file()
    return RuntimeError(
        f"{main} starts a pool when it is imported, and the pool's processes import the main module "
        "(as multiprocessing's forkserver and spawn start methods do), so they stopped there instead of "
        "starting pools of their own. Start the pool only when the file runs as a script:\n\n"
        '    if __name__ == "__main__":\n'
        "        anyio.run(main)  # or asyncio.run(main()), whatever starts the pool\n"
    )


def forkserver_exited(code: int) -> RuntimeError:
    """The error for a pool whose forkserver exited with ``code`` before it started a worker."""
    main = _main_file()
    return RuntimeError(
        f"multiprocessing's forkserver, which starts the pool's workers, exited (code {code}) before it "
        f"started one. It imports {main} first, as each worker would, without running its "
        'if __name__ == "__main__": block: if its traceback is printed above, that import failed there, '
        "most likely in code that belongs under that block (reading the command line, say)"
    )


def poll_exitcode(process: Any) -> int | None:
    """A multiprocessing process's exit code, read without waiting; None while it runs, or while
    another thread starting a process holds the lock (then look again shortly)."""
    if not mp_lock.acquire(blocking=False):
        return None
    try:
        code: int | None = process.exitcode
    finally:
        mp_lock.release()
    return code


def start_locked(process: Any, child_lifeline: socket.socket) -> None:
    """Start ``process``, whose end of its lifeline is ``child_lifeline``, which it is handed.

    Raises:
        OSError: no process or descriptor to spare (a resource limit), or the forkserver is gone.
        RuntimeError: the forkserver, preloading the main module, found it starts a pool, or it
            exited before it started the process (importing the main module failed there).
    """
    with mp_lock:
        _check_descriptors(_START_DESCRIPTORS)
        try:
            if getattr(process, "_start_method", None) == "forkserver":
                start_forkserver()
            process.start()
        except BaseException as exc:
            refused = _forkserver_refusal(exc)
            _close_half_started(exc.__traceback__)
            if refused is not None:
                raise refused from None
            if isinstance(exc, (EOFError, ConnectionError)):
                code = _forkserver_exitcode(process)
                if code == MAIN_MODULE_STARTS_POOL:
                    raise main_module_starts_pool() from None
                if code is not None:
                    raise forkserver_exited(code) from None
            raise
    # The child arms its lifeline once its own code runs, but before that multiprocessing has it
    # import the main module, which may take long (and, without the main guard, run the whole
    # script). Owner, signal and O_ASYNC belong to the open socket, which the child shares: set
    # here, the kernel kills the child if this process dies meanwhile.
    with contextlib.suppress(OSError):  # the child is gone already: nothing to arm
        kill_at_end_of_file(child_lifeline.fileno(), process.pid)


async def start_in_thread(process: Any, child_lifeline: socket.socket) -> None:
    """`start_locked`, in one of anyio's worker threads, as it blocks (it talks to the forkserver).

    Raises:
        OSError: as `start_locked`; EAGAIN also where no thread can be started to run it in (a
            limit on processes counts threads too).
        RuntimeError: as `start_locked`.
    """
    try:
        await anyio.to_thread.run_sync(start_locked, process, child_lifeline)
    except RuntimeError as exc:
        if str(exc) != _NO_NEW_THREAD:
            raise
        raise OSError(errno.EAGAIN, str(exc)) from exc


def start_failed(cause: OSError) -> WorkerCrashedError:
    """The error for a worker that could not be started because the system refused a process or a
    descriptor (``cause``): typically a resource limit, which the message names."""
    error = WorkerCrashedError(pid=None, exitcode=None, signal_name=None, task="its start-up")
    hint = _START_ERROR_HINTS.get(cause.errno or 0)
    sentences = [f"could not start a worker: {cause}.", hint, "The pool tries again for the next task."]
    error.args = (" ".join(filter(None, sentences)),)
    return error


def _check_descriptors(count: int) -> None:
    """Raise EMFILE (or ENFILE) now unless ``count`` descriptors are free.

    multiprocessing opens several descriptors to start a process, and one it cannot open leaves
    the others open (its forkserver's request, from Python 3.11 to CPython's main branch at
    least); and Python 3.11's forkserver, half sent a request, dies of it. Checked first, under
    `mp_lock`, a shortage fails the start before anything is opened (unless another thread takes
    descriptors meanwhile).
    """
    opened: list[int] = []
    try:
        for _ in range(count):
            opened.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise OSError(exc.errno, exc.strerror) from None  # not about the file it opened
    finally:
        for fd in opened:
            os.close(fd)


def _forkserver_exitcode(process: Any) -> int | None:
    """The exit code of multiprocessing's forkserver, if ``process`` was to be started by it and it
    has exited; read without reaping it (multiprocessing reaps it before starting another one)."""
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    waitid = getattr(os, "waitid", None)
    if getattr(process, "_start_method", None) != "forkserver" or pid is None or waitid is None:
        return None
    deadline = time.monotonic() + _FORKSERVER_EXIT_WAIT
    while True:
        try:
            info = waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return None
        if info is not None:
            return info.si_status if info.si_code == os.CLD_EXITED else None
        if time.monotonic() > deadline:
            return None  # still running: the start failed for another reason
        time.sleep(0.01)


def _forkserver_refusal(error: BaseException) -> OSError | None:
    """The error for which procpool's forkserver could not fork the process that failed to start
    with ``error``, or None if it did not say so (see `_forkserver.guard_forks`).

    It says so with one byte, the error number, where a process's pid takes eight, and closes the
    request. The start then failed reading that pid (which multiprocessing's ``read_signed`` had
    read into ``data``), or writing the start data into the closed request (the byte is unread).
    """
    launch: Any = None
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code is forkserver.read_signed.__code__:
            return _refusal(frame.f_locals.get("data"))
        if launch is None and frame.f_code.co_name == "_launch":
            launch = frame.f_locals.get("self")
        tb = tb.tb_next
    sentinel = getattr(launch, "sentinel", None)
    if not isinstance(error, BrokenPipeError) or not isinstance(sentinel, int):
        return None
    try:
        os.set_blocking(sentinel, False)
        return _refusal(os.read(sentinel, 8))
    except OSError:  # nothing to read: the forkserver said nothing
        return None


def _refusal(data: object) -> OSError | None:
    if not isinstance(data, bytes) or len(data) != 1:
        return None
    code = data[0]
    return OSError(code, os.strerror(code)) if code else OSError("the forkserver could not fork a process")


def _close_half_started(tb: TracebackType | None) -> None:
    """``Process.start()`` failed half-way, typically because the new process was killed before
    it read its start data (a broken pipe). The pipes multiprocessing opened for it are closed
    by a finalizer of its half-made ``Popen``, which the traceback keeps alive: run it now."""
    while tb is not None:
        popen = tb.tb_frame.f_locals.get("self")
        finalizer = getattr(popen, "finalizer", None)
        if hasattr(popen, "_launch") and callable(finalizer):
            finalizer()
            return
        tb = tb.tb_next


class WorkerProcess:
    """One worker process and the parent's end of its channel and lifeline."""

    def __init__(
        self,
        process: Any,
        channel: socket.socket,
        lifeline: socket.socket,
        started: mmap.mmap,
        owner: weakref.WeakSet[WorkerProcess],
        companion: socket.socket,
    ) -> None:
        self._process = process
        self._exit_fd = _exit_descriptor(process)
        self._channel = channel
        self._lifeline = lifeline
        self._companion = companion  # the channel's socket for descriptors of large buffers
        self._started = started
        self._started_at_exit: int | None = None  # read from ``started`` before it is unmapped
        self._frames = wire.FrameBuffer(companion)
        self.frames: deque[wire.Frame] = deque()  # read, not yet settled: several often come in one read
        self._unsent: deque[bytes | memoryview] = deque()  # frames the channel has not taken yet
        self._known_functions: OrderedDict[int, None] = OrderedDict()
        self._exitcode: int | None = None
        self._released = False
        self._last_reports = False  # stopped: deliver what the worker reports as it exits
        self._io: ChannelIO | None = None  # set by `attach`
        self._writing = False  # a callback writes the unsent frames as the channel takes them
        self._watching: set[int] = set()  # the descriptors `watch` waits on
        self.pid: int = process.pid
        self.tasks_run = 0
        self.dispatched = 0
        _live.add(self)
        owner.add(self)

    @classmethod
    async def spawn(cls, context: BaseContext, setup: bytes, owner: weakref.WeakSet[WorkerProcess]) -> WorkerProcess:
        """Start a worker and wait until it is ready for tasks (its initializer has run); it is
        added to ``owner`` (its pool's) as soon as it is started.

        Raises:
            InitializerError: the initializer raised; the child's exception is the cause.
            WorkerCrashedError: the worker died before it was ready, or could not be started (no
                process or descriptor to spare: a resource limit, which the message names).
        """
        with contextlib.ExitStack() as undo:  # what is made, closed (in reverse) if a later step fails
            try:
                parent_channel, child_channel = socket.socketpair()
                undo.callback(parent_channel.close)
                with contextlib.ExitStack() as child_ends:  # closed once the child has them
                    child_ends.callback(child_channel.close)
                    parent_lifeline, child_lifeline = socket.socketpair()
                    undo.callback(parent_lifeline.close)
                    child_ends.callback(child_lifeline.close)
                    # Where the descriptors of large buffers go, ahead of their frames (see `_buffers`).
                    parent_companion, child_companion = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                    undo.callback(parent_companion.close)
                    child_ends.callback(child_companion.close)
                    started_fd = shared_memory(wire.STARTED.size, "procpool-worker")
                    child_ends.callback(os.close, started_fd)  # the mapping stays
                    started = mmap.mmap(started_fd, wire.STARTED.size)
                    undo.callback(started.close)
                    process = context.Process(  # type: ignore[attr-defined]
                        target=worker_main,
                        args=(child_channel, child_lifeline, setup, InheritedFd(started_fd), child_companion),
                        name=WORKER_NAME,
                    )
                    # Shielded: a cancellation arriving just after the start would leave a process
                    # that nobody stops; it is delivered at the next checkpoint, which stops the worker.
                    with anyio.CancelScope(shield=True):
                        await start_in_thread(process, child_lifeline)
                    undo.callback(_kill_unhandled, process)
                parent_channel.setblocking(False)
                worker = cls(process, parent_channel, parent_lifeline, started, owner, parent_companion)
            except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
                # The new process died before it read its start data: a crash during start-up.
                raise WorkerCrashedError(pid=None, exitcode=None, signal_name=None, task="its start-up") from exc
            except OSError as exc:
                raise start_failed(exc) from exc
            undo.pop_all()
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
            frame = await worker._first_frame()
            if frame is None:
                if await worker.wait_exit(_START_EXIT_GRACE) == MAIN_MODULE_STARTS_POOL:
                    raise main_module_starts_pool()
                raise worker.crash_error("its start-up")
            if frame.kind == wire.INIT_FAILED:
                raise InitializerError("the pool's initializer raised in a new worker") from (
                    unpack_exception(frame.body)
                )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await worker.stop(grace=0)
            raise
        return worker

    async def _first_frame(self) -> wire.Frame | None:
        """The worker's first frame after what its initializer reported; None if it died first
        (watched as a task's worker is: see `watch`)."""
        async with anyio.create_task_group() as watching:
            watching.start_soon(self.watch)
            frame = await self.receive()
            while frame is not None and frame.kind in wire.REPORTS:  # the initializer logged or printed
                _reports.deliver(self.pid, frame, None)
                frame = await self.receive()
            watching.cancel_scope.cancel()
        return frame

    # -- the channel ---------------------------------------------------------------------------

    def send(self, buffers: list[bytes], *, soon: bool = False) -> None:
        """Send frames to the worker without waiting: the channel takes what it can now (all of
        them in one system call, in the common case), and the rest is written as the channel
        takes it (see `attach`). So the parent never waits to write while it reads nothing,
        which could deadlock with a worker that is itself waiting to write (a task's thread
        printing, say). If the worker has died, the frames are dropped: its death shows as end
        of file.

        With ``soon`` (for a worker busy with another task, which cannot read them yet anyway),
        the frames go at the end of this loop turn, with whatever else is sent to the worker
        meanwhile: one system call for many tasks sent ahead.
        """
        self._unsent.extend(buffers)
        if self._writing:
            return  # a callback writes them as the channel takes them
        if soon and self._io is not None:
            self._writing = True
            self._io.flush_soon(self._channel.fileno(), self._write_more)
            return
        self._write()
        if self._unsent and self._io is not None:
            self._want_write()

    def _want_write(self) -> None:
        """Write the unsent frames as the channel becomes writable."""
        assert self._io is not None
        self._writing = True
        self._io.want_write(self._channel.fileno(), self._write_more)

    def _write_more(self) -> bool:
        """Write what the channel takes; False once nothing is left to write."""
        self._write()
        self._writing = bool(self._unsent)
        return self._writing

    def _write(self) -> None:
        """Write what the channel takes of the unsent frames now."""
        unsent = self._unsent
        if len(unsent) > 1 and sum(map(len, unsent)) <= wire.JOIN_LIMIT:
            joined = b"".join(unsent)  # small frames go together, in one buffer
            unsent.clear()
            unsent.append(joined)
        while unsent:
            buffers = list(itertools.islice(unsent, _MAX_BUFFERS_PER_WRITE))
            try:
                # sendmsg writes several buffers in one system call; a single buffer goes by send,
                # which measured some 20 µs faster per round trip of a tiny task.
                sent = self._channel.sendmsg(buffers) if len(buffers) > 1 else self._channel.send(buffers[0])
            except BlockingIOError:
                return
            except (BrokenPipeError, ConnectionResetError):
                unsent.clear()
                return
            for buffer in buffers:
                if sent < len(buffer):
                    unsent[0] = memoryview(buffer)[sent:]
                    return  # the channel is full
                sent -= len(buffer)
                unsent.popleft()

    def encode_calls(self, jobs: list[Job]) -> list[bytes]:
        """Call frames for ``jobs``, for this worker: a job's pickled function goes only if the
        worker does not cache it yet. The descriptor of a job's out-of-band buffers goes at once,
        ahead of its frame. One call for a batch: tiny tasks go to a busy worker dozens at a time."""
        known = self._known_functions
        frames: list[bytes] = []
        for job in jobs:
            fn_id, fn_bytes, forget_id = job.fn_id, job.fn_bytes, 0
            if fn_id in known:
                known.move_to_end(fn_id)
                fn_bytes = b""
            else:
                known[fn_id] = None
                if len(known) > _FUNCTIONS_PER_WORKER:
                    forget_id, _ = known.popitem(last=False)
            buffers, table = job.buffers, b""
            if buffers is not None:
                # Blocks only while the socket is full, which it is not: a large call goes to an idle worker
                # only (see `WorkerSlot`), so a worker has one or two such descriptors to read at most.
                with contextlib.suppress(OSError):  # the worker is gone: its end of file says so
                    send_descriptor(self._companion, buffers.fd)
                table = buffers.table
            kind = _CALL if job.stream is None else _STREAM
            frames += _encode_call(kind, job.id, fn_id, forget_id, fn_bytes, job.args_bytes, table)
        return frames

    def call_size(self, fn_id: int, fn_bytes: bytes, args_bytes: bytes) -> int:
        """The bytes a call frame for this worker carries (the function only if not cached)."""
        return len(args_bytes) + (0 if fn_id in self._known_functions else len(fn_bytes))

    def attach(self, io: ChannelIO, on_readable: Step) -> None:
        """From now on ``on_readable`` is called whenever the channel has something to read,
        and what the channel cannot take at once is written as it becomes writable."""
        self._io = io
        io.watch(self._channel.fileno(), on_readable)
        if self._unsent:
            self._want_write()

    def read(self) -> bool:
        """Read what the channel holds now into the buffered frames; False at end of file."""
        try:
            frames = self._frames.read(self._channel)
        except BlockingIOError:
            return True
        except ConnectionResetError:
            frames = None
        if frames is None:
            return False
        self.frames.extend(frames)
        return True

    def stop_reading(self) -> None:
        """No more callbacks: the channel is at its end, or the worker is being stopped."""
        if self._io is not None and self._channel.fileno() != -1:  # -1: closed already
            self._io.unwatch(self._channel.fileno())
        self._io = None
        self._writing = False

    async def receive(self) -> wire.Frame | None:
        """The next frame from the worker, waiting for it (before `attach`, while the worker
        starts); None once the channel is at end of file."""
        while not self.frames:
            if not self.read():
                return None
            if not self.frames:
                await anyio.wait_readable(self._channel)
        return self.frames.popleft()

    # -- the process ---------------------------------------------------------------------------

    @property
    def exitcode(self) -> int | None:
        return self._exitcode

    def last_began(self) -> int:
        """The id of the task the worker began last (0: none yet). The worker writes it into
        shared memory before it even unpickles a task, so when a worker dies the tasks it had not
        begun are known, and can go to another worker."""
        if self._started_at_exit is None:
            last: int = wire.STARTED.unpack_from(self._started)[0]
            return last
        return self._started_at_exit

    def has_exited(self) -> bool:
        """Whether the process has ended (checked without waiting)."""
        return self._exitcode is not None or poll_one(self._exit_fd, write=False, timeout_ms=0)

    async def watch(self) -> None:
        """Return once the process has ended, having shut the parent's end of its channel down.

        Run it beside whatever reads the channel. A worker's death usually shows as end of file
        on its channel, but not while a process it started still holds the worker's end (a task
        that handed it on); the shutdown ends a wait for frames all the same, after what the
        worker sent, and drops the frames still to be written instead of waiting for room.
        """
        if self._released:
            return
        # A descriptor of its own, as `wait_exit` may wait on `_exit_fd` meanwhile; opened anew,
        # not copied, for an event loop's epoll set can keep a closed descriptor's copy watched.
        try:
            fd = _exit_descriptor(self._process)
        except OSError:  # none to spare (the process's limit is reached): look now and then
            while not self.has_exited():  # noqa: ASYNC110 (no descriptor, so no event to wait for)
                await anyio.sleep(_EXIT_LOOK_INTERVAL)
        else:
            self._watching.add(fd)
            try:
                if not self.has_exited():  # else its pid may be another process's by now
                    await anyio.wait_readable(fd)
            finally:
                self._watching.discard(fd)
                anyio.notify_closing(fd)  # trio keeps a descriptor in its epoll set until told
                os.close(fd)
        with contextlib.suppress(OSError):  # closed already: the worker was stopped
            self._channel.shutdown(socket.SHUT_RDWR)

    def _signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the worker and every process its tasks started: the worker leads its
        own process group (see `worker_main`), whose id is the worker's pid."""
        if self._exitcode is not None:
            return  # reaped: the pid, and the group id, may belong to others by now
        try:
            os.killpg(self.pid, signum)
            return
        except ProcessLookupError:
            pass  # no such group yet: the worker was stopped before it made its group
        except PermissionError:
            pass  # a task's child changed user; the worker itself is still ours to signal
        if signum == signal.SIGKILL:
            self._process.kill()
        else:
            self._process.terminate()

    def nudge(self) -> None:
        """Make the worker read its channel now, even while a task runs: it acts on the CANCEL
        frames sent to take back tasks waiting there (a task stuck in C code delays it)."""
        if TAKE_BACK_SIGNAL is not None and self._exitcode is None:  # not reaped: the pid is still its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, TAKE_BACK_SIGNAL)

    def _kill_leftovers(self) -> None:
        """The worker has exited but is not reaped yet, so its group id is still its own: SIGKILL
        whatever its tasks started and left behind."""
        if self._exitcode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    async def _exited(self) -> None:
        """Wait, without blocking the event loop, until the process has exited, and reap it."""
        while self._exitcode is None:
            await anyio.wait_readable(self._exit_fd)
            self._kill_leftovers()
            code = poll_exitcode(self._process)
            if code is not None:
                self._exitcode = code
                self._release()
                break
            await anyio.sleep(_EXIT_POLL_INTERVAL)  # exited, but its status is not readable yet

    async def wait_exit(self, grace: float) -> int:
        """Wait until the process has exited, SIGKILLing it (its process group too) if it has not
        within ``grace`` seconds; its exit code. A cancel ends the wait and leaves the process be."""
        with anyio.move_on_after(grace):
            await self._exited()
        if self._exitcode is None:
            self._signal(signal.SIGKILL)
            await self._exited()
        assert self._exitcode is not None
        return self._exitcode

    async def stop(self, grace: float) -> None:
        """Stop the worker: end of file on its channel, then SIGTERM, then SIGKILL.

        ``grace`` is how long each step may take. Returns once the process is gone.
        """
        self.stop_reading()
        self._unsent.clear()
        # Only this side shut down: the worker may still report as it exits (items of a
        # procpool.Queue it had to drop), and those reports are delivered once it is gone.
        self._last_reports = True
        with contextlib.suppress(OSError):  # the worker is gone already
            self._channel.shutdown(socket.SHUT_WR)
        try:
            if grace > 0:
                with anyio.move_on_after(grace):
                    await self._exited()
                    return
            await self.terminate(grace)
        except BaseException:
            self.kill_now()
            raise

    async def terminate(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns once the process is gone."""
        try:
            self._signal(signal.SIGTERM)
            await self.wait_exit(grace)
        except BaseException:
            # Interrupted even inside a shielded scope: asyncio's own Task.cancel() (as
            # asyncio.run sends every task at shutdown) passes through anyio's shields.
            self.kill_now()
            raise

    def crash_error(self, task: str) -> WorkerCrashedError:
        code = self._exitcode
        signal_name = None
        if code is not None and code < 0:
            try:
                signal_name = signal.Signals(-code).name
            except ValueError:
                signal_name = f"signal {-code}"
        return WorkerCrashedError(pid=self.pid, exitcode=code, signal_name=signal_name, task=task)

    def _close_channel(self) -> None:
        self.stop_reading()
        self._unsent.clear()
        self._channel.close()

    def _deliver_last_reports(self) -> None:
        """Deliver the reports a stopped worker sent (see `stop`); its other frames answer nobody."""
        while self.read() and self.frames:
            while self.frames:
                frame = self.frames.popleft()
                if frame.kind in wire.REPORTS:
                    _reports.deliver(self.pid, frame, None)

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._last_reports:
            self._deliver_last_reports()
        self._close_channel()
        self._companion.close()  # the kernel drops the descriptors still in it
        self._lifeline.close()
        self._started_at_exit = self.last_began()
        self._started.close()
        os.close(self._exit_fd)
        self._process.close()
        _live.discard(self)

    def kill_now(self) -> None:
        """Synchronous last resort (cleanup interrupted, interpreter exit): SIGKILL and reap.

        Blocks for the few milliseconds a SIGKILLed process takes to go.
        """
        if self._released:
            return
        self._signal(signal.SIGKILL)
        with mp_lock:
            self._process.join(5)
            code = self._process.exitcode
        if code is not None:
            self._exitcode = code
            self._release()

    def abandon(self) -> None:
        """Kill and reap the worker of a pool whose event loop has ended without closing it, and
        close every descriptor it had, without a word to that loop: it never runs again."""
        self._io = None  # nothing to unwatch
        for fd in self._watching:  # `watch` waits on it for ever
            os.close(fd)
        self._watching.clear()
        self.kill_now()


def _exit_descriptor(process: Any) -> int:
    """A descriptor that becomes readable once ``process`` has ended: a pidfd, which no process
    the worker starts can hold open (as one can hold multiprocessing's sentinel pipe under spawn);
    else a copy of the sentinel. Opened as the process starts, before its pid could be reused."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        with contextlib.suppress(OSError):  # no pidfds (Linux before 5.3), or it is gone already
            fd: int = pidfd_open(process.pid)
            return fd
    return os.dup(process.sentinel)


def _kill_unhandled(process: Any) -> None:
    """SIGKILL and reap a worker that started but could not be handed to a `WorkerProcess` (no
    descriptor to watch it by); blocks for the few milliseconds a SIGKILLed process takes to go."""
    process.kill()
    with mp_lock:
        process.join(5)
    with contextlib.suppress(ValueError):  # still running: its descriptors close with it, later
        process.close()


@atexit.register
def _kill_leftover_workers() -> None:
    # A pool that was never closed must not make multiprocessing's own exit hook wait forever
    # for its (non-daemonic) workers; this hook is registered after multiprocessing's, so it runs first.
    for worker in list(_live):
        worker.kill_now()
