"""Functions that tests/test_scheduling.py runs in workers. Import-light: workers import this module."""

from __future__ import annotations

import logging
import os
import time
from typing import Any


def nap(seconds: float) -> tuple[int, float, float]:
    """Sleep; the worker's pid and when the call began and ended (`time.monotonic`: one clock for
    all processes on Linux)."""
    started = time.monotonic()
    time.sleep(seconds)
    return os.getpid(), started, time.monotonic()


def note_run(path: str, task_id: int, seconds: float) -> int:
    """Append a line with ``task_id`` to ``path`` as the call begins (one ``write`` with O_APPEND:
    lines from several processes never mix), then sleep; ``task_id``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{task_id}\n".encode())
    finally:
        os.close(fd)
    time.sleep(seconds)
    return task_id


def log_many(logger_name: str, count: int) -> int:
    """Log ``count`` INFO records on ``logger_name``; ``count``."""
    logger = logging.getLogger(logger_name)
    for i in range(count):
        logger.info("record %d", i)
    return count


def identity(value: Any) -> Any:
    return value
