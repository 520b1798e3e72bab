"""What a worker reports besides results: log records, printed text and task progress.

Each report is a frame on the worker's own channel, so it needs no thread and no extra pipe,
and the parent's slot reads it along with the results. Import-light like `_worker`: stdlib and
`procpool._transport` only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import pickle
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .._transport import wire

_PROGRESS_INTERVAL = 0.05  # seconds between progress frames of one task: the parent redraws no faster
_OUTPUT_BUFFER = 8192  # bytes held before a write without a newline goes out
STDOUT, STDERR = 1, 2

Write = Callable[[list[bytes]], None]

_reporter: Reporter | None = None  # set in a worker process


def report_progress(done: float, total: float | None = None) -> None:
    """Report how far the task running in this worker has got; the parent sees it as
    `Task.progress` and through `Task.add_progress_callback`.

    Cheap enough to call in a loop: reports closer together than 50 ms are merged, except the
    last one (``done >= total``). Outside a procpool worker it does nothing, so the same function
    also runs in the parent or in tests.

    Args:
        done: work done so far, in any unit (items, bytes, percent).
        total: the amount of work in the same unit, if known.
    """
    if _reporter is not None:
        _reporter.progress(done, total)


class Reporter:
    """Sends the worker's reports; ``task_id`` names the task running now (0 between tasks)."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self.task_id = 0
        self._last_progress = (0, 0.0)  # task id and time of the last progress frame
        self.streams: list[_ForwardedText] = []

    def send(self, kind: int, body: bytes) -> None:
        with contextlib.suppress(OSError):  # the pool has gone: nobody is left to read it
            self._write(wire.encode(kind, self.task_id, body))

    def progress(self, done: float, total: float | None) -> None:
        if not isinstance(done, (int, float)) or not isinstance(total, (int, float, type(None))):
            raise TypeError(f"report_progress(done, total) takes numbers, not {done!r}, {total!r}")
        now = time.monotonic()
        finished = total is not None and done >= total
        last_task, last_time = self._last_progress
        if last_task == self.task_id and now - last_time < _PROGRESS_INTERVAL and not finished:
            return
        self._last_progress = (self.task_id, now)
        body = wire.PROGRESS_BODY.pack(done, math.nan if total is None else total)
        self.send(wire.PROGRESS, body)

    def flush_output(self) -> None:
        """Send what the task printed, ahead of its result; restore a stream the task closed."""
        for stream in self.streams:
            if stream.closed:
                stream.reopen()
            elif stream.pending:
                stream.send(whole=True)


class _ForwardedText(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a worker: the text goes to the parent's own stream,
    a line at a time. ``fileno()`` is the inherited descriptor, for code that writes to it.

    Its ``buffer`` takes bytes into the same queue, so text and bytes keep their order; both go
    as UTF-8 (the stream's encoding), which the parent decodes."""

    encoding = "utf-8"
    errors = "backslashreplace"

    def __init__(self, reporter: Reporter, which: int, fd: int) -> None:
        super().__init__()
        self._reporter = reporter
        self._which = which
        self._fd = fd
        self._parts: list[bytes] = []
        self.pending = 0  # bytes queued
        self._lock = threading.Lock()  # threads of the task may print at once
        self._buffer = _ForwardedBytes(self)

    @property
    def buffer(self) -> _ForwardedBytes:
        return self._buffer

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.queue(text.encode("utf-8", "backslashreplace"), "\n" in text)
        return len(text)

    def queue(self, data: bytes, newline: bool) -> None:
        """Queue encoded output; send it if it ends a line or the queue is full."""
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        with self._lock:
            self._parts.append(data)
            self.pending += len(data)
        if newline or self.pending > _OUTPUT_BUFFER:
            self.flush()

    def flush(self) -> None:
        self.send(whole=False)

    def send(self, *, whole: bool) -> None:
        """Send what is queued. Unless ``whole``, a character whose first bytes alone came from
        ``buffer`` waits for the rest, so that the parent does not decode it in two halves."""
        with self._lock:
            data = b"".join(self._parts)
            cut = len(data) if whole else _complete_utf8(data)
            data, held = data[:cut], data[cut:]
            self._parts = [held] if held else []
            self.pending = len(held)
        if data:
            self._reporter.send(wire.OUTPUT, bytes([self._which]) + data)

    def close(self) -> None:
        if not self.closed:
            self.send(whole=True)
        super().close()

    def reopen(self) -> None:
        """A task closed it (``sys.stdout.close()``): the next task gets a working stream."""
        stream = _ForwardedText(self._reporter, self._which, self._fd)
        self._reporter.streams[self._reporter.streams.index(self)] = stream
        setattr(sys, "stdout" if self._which == STDOUT else "stderr", stream)


class _ForwardedBytes(io.BufferedIOBase):
    """``sys.stdout.buffer`` or ``sys.stderr.buffer`` of a worker: bytes join its text stream's
    queue. The two are one stream, as a real stdout and its buffer are: closing either closes
    both (as collecting a ``TextIOWrapper`` made over the buffer does)."""

    def __init__(self, text: _ForwardedText) -> None:
        super().__init__()
        self._text = text

    @property
    def closed(self) -> bool:
        return self._text.closed

    def close(self) -> None:
        self._text.close()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._text.fileno()

    def write(self, data: Any) -> int:
        data = bytes(memoryview(data))  # any bytes-like object, as a binary file takes
        self._text.queue(data, b"\n" in data)
        return len(data)

    def flush(self) -> None:
        self._text.flush()


def _complete_utf8(data: bytes) -> int:
    """The length of ``data`` less an unfinished UTF-8 character at its end, if any."""
    for back in range(1, min(len(data), 3) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # the first byte of a character of 2, 3 or 4 bytes
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) - back if back < length else len(data)
    return len(data)


class _LogForwarder(logging.Handler):
    """The root handler of a worker: records go to the parent's loggers of the same name."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self._reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._reporter.send(wire.LOG, _pickle_record(record))
        except Exception:  # a broken channel or a record that cannot travel: never fail the task
            self.handleError(record)


def _pickle_record(record: logging.LogRecord) -> bytes:
    """The record as a picklable dict: message formatted, traceback as text (like QueueHandler)."""
    state = dict(record.__dict__)
    state["msg"] = record.getMessage()
    state["args"] = None
    if record.exc_info:
        state["exc_text"] = state.get("exc_text") or logging.Formatter().formatException(record.exc_info)
    state["exc_info"] = None
    state.pop("message", None)
    try:
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an extra field that cannot travel goes as its repr
        plain = {key: value if _picklable(value) else repr(value) for key, value in state.items()}
        return pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def install(write: Write, log_levels: dict[str, int] | None, forward_output: bool) -> Reporter:
    """Set up this worker's reports.

    Args:
        write: sends frames to the parent (thread-safe).
        log_levels: the parent's logger levels (``""``: the root), so the worker forwards only the
            records the parent would handle; None leaves logging alone.
        forward_output: replace ``sys.stdout`` and ``sys.stderr`` with forwarding streams.
    """
    global _reporter
    reporter = _reporter = Reporter(write)
    if log_levels is not None:
        root = logging.getLogger()
        for handler in root.handlers[:]:  # a module-level basicConfig re-run on import: not twice
            root.removeHandler(handler)
        root.addHandler(_LogForwarder(reporter))
        for name, level in log_levels.items():
            logging.getLogger(name or None).setLevel(level)
    if forward_output:
        for which, name in ((STDOUT, "stdout"), (STDERR, "stderr")):
            stream = _ForwardedText(reporter, which, which)
            reporter.streams.append(stream)
            setattr(sys, name, stream)
    return reporter


def uninstall() -> None:
    """Undo `install` in a process forked by a task, which has no channel to the parent: its
    output goes to the descriptors it inherited, and its log records to logging's own fallback
    (warnings and above, on stderr), rather than nowhere."""
    global _reporter
    reporter, _reporter = _reporter, None
    if reporter is None:
        return
    if isinstance(sys.stdout, _ForwardedText):
        sys.stdout = sys.__stdout__
    if isinstance(sys.stderr, _ForwardedText):
        sys.stderr = sys.__stderr__
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler, _LogForwarder):
            root.removeHandler(handler)
