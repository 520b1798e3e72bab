"""Hostile functions that tests run in worker processes. Import-light: workers import this module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def identity(x: Any) -> Any:
    return x


def raise_system_exit(code: Any) -> None:
    raise SystemExit(code)


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt("from the task")


def raise_generator_exit() -> None:
    raise GeneratorExit("from the task")


class CustomBaseError(BaseException):
    """A BaseException subclass that is not an Exception."""


def raise_custom_base() -> None:
    raise CustomBaseError("custom")


def recurse(depth: int = 0) -> int:
    return recurse(depth + 1)


def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        value, depth = value[0], depth + 1
    return depth


def self_referencing() -> tuple[list[Any], dict[str, Any]]:
    items: list[Any] = [1]
    items.append(items)
    mapping: dict[str, Any] = {}
    mapping["self"] = mapping
    mapping["items"] = items
    return items, mapping


def close_stdout_and_print() -> None:
    sys.stdout.close()
    print("nobody reads this")


def close_fd_1_and_print() -> None:
    os.close(1)
    print("nobody reads this", flush=True)


def print_lines(count: int) -> int:
    for i in range(count):
        print(f"line {i}", flush=True)
    return count


def fork_children_then_sleep(path: str, seconds: float) -> None:
    """Start a forked child and an exec'd child, write ``worker child child`` pids to ``path``, sleep."""
    pid = os.fork()
    if pid == 0:  # the forked child just sleeps
        time.sleep(seconds)
        os._exit(0)
    sleeper = subprocess.Popen(["sleep", str(seconds)])
    Path(path).write_text(f"{os.getpid()} {pid} {sleeper.pid}")
    time.sleep(seconds)


def block_sigterm_then_sleep(path: str, seconds: float) -> None:
    """Block SIGTERM with the signal mask (not a handler), write our pid to ``path``, then sleep."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def handle_sigterm_by_ignoring(path: str, seconds: float) -> None:
    """Install a SIGTERM handler that does nothing, write our pid to ``path``, then sleep."""
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    Path(path).write_text(str(os.getpid()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


def deflect_sigio_then_sleep(path: str, how: str, seconds: float) -> None:
    """Ignore SIGIO (``how="ignore"``, with a forked child that inherits that), block it, or
    handle it, as a task using SIGIO for its own ends might; write our pids to ``path``, sleep."""
    pids = [os.getpid()]
    if how == "ignore":
        signal.signal(signal.SIGIO, signal.SIG_IGN)
        pid = os.fork()
        if pid == 0:
            time.sleep(seconds)
            os._exit(0)
        pids.append(pid)
    elif how == "block":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGIO})
    else:
        signal.signal(signal.SIGIO, lambda signum, frame: None)
    Path(path).write_text(" ".join(map(str, pids)))
    time.sleep(seconds)


def getpid() -> int:
    return os.getpid()


async def read_pids(path: Path, count: int) -> list[int]:
    """In the parent: wait until ``path`` lists ``count`` pids (written by the functions above)."""
    import anyio

    while True:
        try:
            pids = [int(pid) for pid in path.read_text().split()]
        except (OSError, ValueError):
            pids = []
        if len(pids) == count:
            return pids
        await anyio.sleep(0.01)
