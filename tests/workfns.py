"""Functions that tests run in worker processes. Import-light: workers import this module."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

_state: dict[str, Any] = {}


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0, *, scale: int = 1) -> int:
    return (a + b) * scale


def getpid() -> int:
    return os.getpid()


async def async_square(x: int) -> int:
    await asyncio.sleep(0.001)
    return x * x


def sleep_and_return(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def touch_after(path: str, seconds: float) -> int:
    """Write our pid to ``path`` now, then sleep, then append 'done'."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(" done")
    return os.getpid()


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def exit_hard(code: int) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfault() -> None:
    ctypes.string_at(0)


def call_sys_exit(code: int) -> None:
    sys.exit(code)


def return_lock() -> object:
    return threading.Lock()


def identity(x: Any) -> Any:
    return x


class UnpicklableError(Exception):
    def __init__(self) -> None:
        super().__init__("carries a lock")
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise UnpicklableError()


class NeedsTwoArgsError(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}-{b}")  # args == ("a-b",): rebuilding calls __init__ with one arg


def raise_needs_two_args() -> None:
    raise NeedsTwoArgsError("a", "b")


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def set_state(key: str, value: Any) -> None:
    _state[key] = value


def get_state(key: str) -> Any:
    return _state.get(key)


def fail_initializer() -> None:
    raise RuntimeError("initializer refused")


class Multiplier:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def times(self, x: int) -> int:
        return x * self.factor


def touch_then_spin(path: str, n: int) -> int:
    """Write our pid to ``path``, then ``sum(range(n))``: a busy loop in C that never releases the GIL."""
    Path(path).write_text(str(os.getpid()))
    return sum(range(n))


def touch_then_sleep_ignoring_sigterm(path: str, seconds: float) -> None:
    """Ignore SIGTERM, write our pid to ``path``, then sleep: only SIGKILL stops this worker early."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def rendezvous(directory: str, me: str, other: str, timeout: float) -> bool:
    """Announce ``me`` and wait for ``other``: True only if both run at the same time."""
    Path(directory, me).touch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(directory, other).exists():
            return True
        time.sleep(0.005)
    return False


def mul(x: int, y: int) -> int:
    return x * y


def capture(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def thread_and_pid() -> tuple[int, int]:
    """The thread and process that run the call (InlinePool runs calls in this process)."""
    return threading.get_ident(), os.getpid()


async def async_sleep_and_return(seconds: float, value: Any = None) -> Any:
    await asyncio.sleep(seconds)
    return value


def count_up(n: int, log: str | None = None) -> Any:
    """Yield 0..n-1, appending each produced number to ``log``; 'closed' when the generator ends."""
    try:
        for i in range(n):
            if log:
                with open(log, "a") as f:
                    f.write(f"{i}\n")
            yield i
    finally:
        if log:
            with open(log, "a") as f:
                f.write("closed\n")


async def async_count_up(n: int) -> Any:
    for i in range(n):
        await asyncio.sleep(0.001)
        yield i


def numbers_list(n: int) -> list[int]:
    return list(range(n))


def fail_after_items(n: int) -> Any:
    yield from range(n)
    raise ValueError(f"failed after {n}")


def yield_then_sleep(seconds: float, log: str) -> Any:
    try:
        yield os.getpid()
        time.sleep(seconds)
        yield "late"
    finally:
        with open(log, "a") as f:
            f.write("closed\n")


def yield_then_die() -> Any:
    yield 1
    os._exit(9)


def yield_lock() -> Any:
    yield threading.Lock()
