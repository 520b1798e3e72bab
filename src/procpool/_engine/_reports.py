"""The parent's side of worker reports (see `_worker_reports`): log records go to the parent's
loggers, printed text to its ``sys.stdout``/``sys.stderr``, progress to the task's handle."""

from __future__ import annotations

import logging
import math
import pickle
import sys

from .._child import STDOUT
from .._core import Job
from .._transport import wire

_log = logging.getLogger("procpool")


def logging_levels() -> dict[str, int]:
    """The levels this process's loggers are set to (``""``: the root), for workers to copy, so
    they send only the records the parent would handle."""
    levels = {"": logging.getLogger().getEffectiveLevel()}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def deliver(pid: int, frame: wire.Frame, job: Job | None) -> None:
    """Act on a report frame from worker ``pid``; ``job`` is the job it names, if still there."""
    if frame.kind == wire.LOG:
        _deliver_record(pid, frame.body)
    elif frame.kind == wire.OUTPUT:
        _deliver_output(frame.body)
    elif frame.kind == wire.PROGRESS and job is not None:
        done, total = wire.PROGRESS_BODY.unpack(frame.body)
        job.report_progress(done, None if math.isnan(total) else total)


def _deliver_record(pid: int, body: wire.Body) -> None:
    try:
        state = pickle.loads(body)
    except Exception as exc:  # a record whose extra fields unpickle only in the worker
        _log.warning("a log record from worker %d could not be unpickled: %r", pid, exc)
        return
    record = logging.makeLogRecord(state)
    record.worker_pid = pid
    logger = logging.getLogger(None if record.name == "root" else record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


def _deliver_output(body: wire.Body) -> None:
    stream = sys.stdout if body[0] == STDOUT else sys.stderr
    if stream is None:
        return
    try:
        stream.write(bytes(body[1:]).decode("utf-8", "replace"))
        stream.flush()
    except (OSError, ValueError):  # our own stdout is closed, or a pipe nobody reads: as print would lose it
        pass
