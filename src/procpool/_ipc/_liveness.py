"""Who holds or waits on an IPC object, and whether that process still runs.

A process killed with SIGKILL undoes nothing: a token it took stays taken, a wait it announced
stays announced. So the objects whose operations depend on other processes record *who* holds or
waits, in shared memory: a `Lock` its holder, a `Condition` its waiters, a `Barrier` its parties.
A process that would otherwise wait for another forever (for a woken waiter to take its wake-up,
for a party to arrive or leave, for a lock to be released) looks every `CHECK_INTERVAL` seconds
whether that process still runs, and stops waiting for it once it does not.

A process is recorded as its *identity*: its pid and its start time (in clock ticks since boot,
read from ``/proc``), so that a pid the system has given to a new process is not taken for the
dead one. A zombie (dead, not yet reaped by its parent) counts as dead.

An identity is two aligned 8-byte fields, written and read with ``memcpy`` (mmap slices): a reader
may catch a write half done, but only ever between the empty identity and a live one, and the
rules of `alive` treat both halves (pid 0: nobody known; start time 0: not known) as alive, so a
torn read never declares a live process dead.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys

Identity = tuple[int, int]
"""(pid, start time) of a process; `NOBODY` for none."""

NOBODY: Identity = (0, 0)
IDENTITY = struct.Struct("<qq")
CHECK_INTERVAL = 0.05
"""How often a wait that depends on another process checks that the process still runs."""

_HAVE_PROC = os.path.exists("/proc/self/stat")
_mine: tuple[int, Identity] | None = None  # (os.getpid() when computed, identity): redone after a fork


def me() -> Identity:
    """This process's identity."""
    global _mine
    pid = os.getpid()
    if _mine is None or _mine[0] != pid:
        stat = _stat(pid) if _HAVE_PROC else None
        _mine = (pid, (pid, stat[1] if stat is not None else 0))
    return _mine[1]


def alive(identity: Identity) -> bool:
    """Whether the process ``identity`` still runs (True when that cannot be told)."""
    pid, start = identity
    if pid <= 0:
        return True
    if not _HAVE_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    stat = _stat(pid)
    if stat is None:
        return False
    state, started = stat
    return state not in (b"Z", b"X") and start in (0, started)


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(state, start time) of process ``pid``, from ``/proc``; None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold anything: count from the last ")".
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0], int(fields[19])


def read_identity(memory: mmap.mmap, offset: int) -> Identity:
    pid, start = IDENTITY.unpack(memory[offset : offset + IDENTITY.size])
    return pid, start


def write_identity(memory: mmap.mmap, offset: int, identity: Identity) -> None:
    memory[offset : offset + IDENTITY.size] = IDENTITY.pack(*identity)


def map_shared(fd: int, size: int) -> mmap.mmap:
    """Map ``size`` bytes of ``fd``, without the spare descriptor mmap keeps where it can do without."""
    if sys.version_info >= (3, 13):
        return mmap.mmap(fd, size, trackfd=False)
    return mmap.mmap(fd, size)
