"""The worker process's main loop. It uses only the stdlib, cloudpickle and `_wire`, so the same
entry point can serve another way of starting processes.

A worker reads CALL frames from its private channel, runs them one at a time and answers with a
RESULT or ERROR frame. It exits when the channel reaches end of file (the pool closed it), and the
kernel kills it when its lifeline reaches end of file (the owner died), even while a task runs.
"""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import os
import pickle
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from . import _wire


class ChunkRunner:
    """Runs ``fn`` over a chunk of argument tuples in one task (``Pool.map``, ``Executor.map``)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, chunk: tuple[tuple[Any, ...], ...]) -> Any:
        if inspect.iscoroutinefunction(self.fn):
            return self._run_async(chunk)
        return [self.fn(*args) for args in chunk]

    async def _run_async(self, chunk: tuple[tuple[Any, ...], ...]) -> list[Any]:
        return list(await asyncio.gather(*(self.fn(*args) for args in chunk)))


def _arm_lifeline(lifeline: socket.socket) -> None:
    """Ask the kernel for SIGIO when the owner's end of ``lifeline`` closes.

    Nothing is ever sent on the lifeline, so the only event is the owner's death; SIGIO's default
    action terminates the process without needing the GIL, so a worker stuck in C code dies too.
    """
    fd = lifeline.fileno()
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    signal.signal(signal.SIGIO, signal.SIG_DFL)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _Worker:
    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.functions: dict[int, Callable[..., Any] | bytes] = {}
        self.runner: asyncio.Runner | None = None

    def send(self, kind: int, task_id: int, body: bytes = b"") -> None:
        _wire.write_frame(self.channel, _wire.encode(kind, task_id, body))

    def function(self, fn_id: int) -> Callable[..., Any]:
        fn = self.functions[fn_id]
        if isinstance(fn, bytes):
            # Kept as bytes until it loads, so a function that fails to load fails every call.
            fn = pickle.loads(fn)
            if not callable(fn):
                raise TypeError(f"{fn!r} is not callable")
            self.functions[fn_id] = fn
        return fn

    def await_result(self, awaitable: Awaitable[Any]) -> Any:
        if self.runner is None:
            self.runner = asyncio.Runner(loop_factory=_new_event_loop)
        return self.runner.run(_as_coroutine(awaitable))

    def call(self, body: bytes) -> bytes:
        fn_id, forget_id, fn_len = _wire.CALL_PREFIX.unpack_from(body)
        self.functions.pop(forget_id, None)
        start = _wire.CALL_PREFIX.size
        if fn_len:
            self.functions[fn_id] = body[start : start + fn_len]
        fn = self.function(fn_id)
        args, kwargs = pickle.loads(body[start + fn_len :])
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = self.await_result(result)
        return _wire.dumps_for_transport(result, f"the result of {getattr(fn, '__qualname__', fn)!r}")

    def serve(self) -> None:
        while (frame := _wire.read_frame(self.channel)) is not None:
            try:
                payload = self.call(frame.body)
            except SystemExit:
                raise  # sys.exit() in a task ends this worker, as it would end any process
            except BaseException as exc:
                self.send(_wire.ERROR, frame.task_id, _wire.pack_exception(exc))
            else:
                self.send(_wire.RESULT, frame.task_id, payload)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def main(channel: socket.socket, lifeline: socket.socket, setup: bytes) -> None:
    """Entry point of a worker process (the target given to ``multiprocessing``)."""
    _arm_lifeline(lifeline)
    # Ctrl-C reaches the whole foreground process group; it is the parent's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel.setblocking(True)
    worker = _Worker(channel)
    try:
        initializer, initargs = pickle.loads(setup)
        if initializer is not None:
            try:
                initializer(*initargs)
            except BaseException as exc:
                worker.send(_wire.INIT_FAILED, 0, _wire.pack_exception(exc))
                return
        worker.send(_wire.READY, 0)
        worker.serve()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the pool went away; nothing is waiting for an answer
    finally:
        worker.close()
        channel.close()
