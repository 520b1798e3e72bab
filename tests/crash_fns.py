"""Functions for tests/test_crash_detection.py, run in worker processes. Import-light."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
from pathlib import Path


def limit_address_space(headroom: int) -> None:
    """Initializer: cap this worker's address space at what it maps now plus ``headroom`` bytes,
    so that the buffer for a larger argument cannot be allocated: the worker dies while receiving
    the task, before it begins it (as under a memory limit or the OOM killer)."""
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (kib * 1024 + headroom, hard))


def size_of(data: bytes) -> int:
    return len(data)


def start_session(pid_file: str, inherit_all: bool) -> int:
    """Start ``sleep 30`` in a session of its own (out of the worker's process group), inheriting
    the worker's inheritable descriptors, and note its pid in ``pid_file``; this worker's pid.
    With ``inherit_all``, every descriptor is made inheritable first, so the child holds the
    worker's channel whatever the worker does."""
    if inherit_all:
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
                os.set_inheritable(int(name), True)
    child = subprocess.Popen(["sleep", "30"], start_new_session=True, close_fds=False)
    Path(pid_file).write_text(str(child.pid))
    return os.getpid()


def start_session_then_die(pid_file: str, how: str, inherit_all: bool) -> None:
    """`start_session`, then die: ``how`` is ``"exit"`` (``os._exit(1)``) or ``"sigkill"``."""
    start_session(pid_file, inherit_all)
    if how == "exit":
        os._exit(1)
    os.kill(os.getpid(), signal.SIGKILL)


def close_channel_then_sleep(log: str, seconds: float) -> None:
    """Close every descriptor above 2 (the worker's channel among them), note one run in ``log``,
    then sleep: the parent sees the channel's end of file while the worker lives on."""
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    with open(log, "a") as file:  # after the close: once the line is there, the channel is closed
        file.write("run\n")
    time.sleep(seconds)


def touch_then_print_and_die(path: str, seconds: float, text: str) -> None:
    """Note in ``path`` that the task began, sleep ``seconds``, print ``text``, then SIGKILL this
    worker: its last frame (the printed line) and its death reach the parent together."""
    Path(path).touch()
    time.sleep(seconds)
    print(text, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
