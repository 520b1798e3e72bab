"""Functions and classes that test_lifecycle.py runs in worker processes. Import-light: workers
import this module, and the parent imports it to unpickle what comes back."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NoReturn


def _wait_for(path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def touch(path: str) -> str:
    """Create ``path``: the marker a test checks to learn whether the call ran."""
    Path(path).touch()
    return path


def wait_for_file(path: str, value: Any = None) -> Any:
    _wait_for(path)
    return value


def exit_after_progress(go: str) -> None:
    """Once ``go`` exists, report progress (a frame the parent reads mid-task, so a busy slot may
    send tasks ahead then), then die with ``os._exit``."""
    import procpool

    _wait_for(go)
    procpool.report_progress(1, 2)
    time.sleep(0.5)
    os._exit(3)


class Payload:
    """A big-ish result whose lifetime a test follows with a weak reference."""

    def __init__(self, nbytes: int) -> None:
        self.data = bytearray(nbytes)


def make_payload(nbytes: int) -> Payload:
    return Payload(nbytes)


class PayloadError(Exception):
    """An exception carrying a big-ish payload (exceptions are weakly referenceable)."""

    def __init__(self, nbytes: int) -> None:
        super().__init__(nbytes)
        self.data = bytearray(nbytes)


def raise_payload_error(nbytes: int) -> NoReturn:
    raise PayloadError(nbytes)


_BASE_EXCEPTIONS: dict[str, type[BaseException]] = {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}


def explode(kind: str) -> NoReturn:
    """Raise ``SystemExit`` or ``KeyboardInterrupt``: what unpickling the objects below runs."""
    raise _BASE_EXCEPTIONS[kind](f"raised while unpickling ({kind})")


class ExplodesOnUnpickle:
    """Pickles fine; unpickling it (in the parent) raises ``kind``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        return (explode, (self.kind,))


def return_explosive(kind: str) -> ExplodesOnUnpickle:
    return ExplodesOnUnpickle(kind)


class ExplodingError(Exception):
    """An exception that pickles fine and whose unpickling (in the parent) raises ``kind``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (explode, (self.args[0],))


def raise_explosive(kind: str) -> NoReturn:
    raise ExplodingError(kind)
