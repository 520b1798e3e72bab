"""procpool's part in multiprocessing's forkserver: it dies with its owner while it imports the
main module, and it survives a fork that fails.

Stdlib only, and `procpool/__init__` runs `die_with_owner_while_importing_main` on every import of
procpool, so outside a forkserver it costs one dictionary lookup.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys

TYPE_CHECKING = False  # typing's, without importing typing (see `procpool/__init__`)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType
    from typing import Any

READY_MODULE = "procpool._forkserver_ready"  # preloaded last: the forkserver's preloading is over
# A preload entry that names the main module where it runs by name (``python -m``), its dots
# written as colons: no module is called that (the forkserver passes over it, without looking for
# a package first), and `READY_MODULE` imports the module it names.
MAIN_BY_NAME = "procpool-main-module:"
_PR_SET_PDEATHSIG = 1


def die_with_owner_while_importing_main() -> None:
    """In a forkserver that is importing the main module (multiprocessing preloads it from Python
    3.13.8 on), procpool's import means the main module imports it: make the forkserver die with
    its owner until that import ends. Meanwhile the forkserver watches nothing, and a main module
    lacking its guard runs the whole script there; the pipe by which the forkserver learns of its
    owner's death cannot tell either, as the owner's start request, waiting to be read, holds a
    copy of its other end.

    The kernel's parent-death signal does: the owner's thread that started the forkserver waits
    for that start request's answer, so it ends only with the owner. `READY_MODULE`, which
    procpool asks the forkserver to preload after the main module, clears the signal.
    """
    if "multiprocessing.forkserver" not in sys.modules:  # not a forkserver: nothing to import
        return
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False) and READY_MODULE in preload_list():
        set_parent_death_signal(signal.SIGKILL)


def main_by_name_entry() -> str | None:
    """The preload entry that has the forkserver import the main module by name, where it runs
    by name (``python -m``; a notebook's kernel, too), as multiprocessing has each worker do;
    else None (a script's path reaches the forkserver another way: see `_launch.start_forkserver`)."""
    name = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None)
    return None if name is None else MAIN_BY_NAME + name.replace(".", ":")


def import_main_by_name() -> None:
    """In the forkserver: import the main module that the preload list names (`MAIN_BY_NAME`)
    the way a worker does, as ``__mp_main__``, so that each worker inherits it and its imports
    instead of importing them again, as with a script. The forkserver dies with its owner while
    it does (a module lacking its main guard could start a pool there, as a script could; see
    `die_with_owner_while_importing_main`)."""
    names = [entry[len(MAIN_BY_NAME) :].replace(":", ".") for entry in preload_list() if entry.startswith(MAIN_BY_NAME)]
    if not names:
        return
    import multiprocessing
    from multiprocessing import spawn

    process: Any = multiprocessing.current_process()
    process._inheriting = True  # as multiprocessing marks a process importing the main module
    set_parent_death_signal(signal.SIGKILL)
    try:
        spawn._fixup_main_from_name(names[0])  # type: ignore[attr-defined]
    except ImportError:
        pass  # each worker then tries, and its start says why it cannot
    finally:
        del process._inheriting


def preload_list() -> Sequence[str]:
    """The modules multiprocessing's forkserver was asked to preload, when the forkserver runs
    this code (as it preloads them); else none."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is None:
        return ()
    frame: FrameType | None = sys._getframe()
    while frame is not None and frame.f_code is not forkserver.main.__code__:
        frame = frame.f_back
    return () if frame is None else frame.f_locals.get("preload") or ()


def guard_forks() -> None:
    """Keep multiprocessing's forkserver serving when it cannot fork. Run in the forkserver only
    (by `READY_MODULE`).

    A fork fails when a limit on processes is reached (EAGAIN: RLIMIT_NPROC, a cgroup's pids.max)
    or memory is short (ENOMEM), and the forkserver, which does not catch that error, dies of it.
    Every start then fails until the owner starts another forkserver (which it cannot either
    while the limit holds), and the workers it had started lose their exit statuses, which it was
    to report (multiprocessing then says 255). Instead, the forkserver answers the request it
    could not serve (see `_refuse`) and goes on: its loop carries on after an error numbered
    ECONNABORTED, which it takes for a client that hung up.
    """
    from multiprocessing import forkserver

    real_fork = os.fork

    def fork() -> int:
        try:
            pid = real_fork()
        except OSError as exc:
            request = sys._getframe(1)
            if request.f_code is not forkserver.main.__code__ or not _refuse(request.f_locals, exc):
                raise
            raise ConnectionAbortedError(errno.ECONNABORTED, f"could not fork: {exc}") from exc
        if pid == 0:
            os.fork = real_fork  # the new process is a worker: its forks are its own
        return pid

    os.fork = fork


def _refuse(request: dict[str, Any], error: OSError) -> bool:
    """In the forkserver: answer a start request whose process could not be forked, and close the
    request's descriptors, as the forkserver does once it has forked one; False if they are not
    where this Python's forkserver keeps them.

    The answer is the error number in one byte, where a pid takes eight: whoever asked, its start
    fails at the end of the pipe, as it did when the forkserver died (EOFError, or BrokenPipeError
    if it was still writing the start data), and the engine reads the byte.
    """
    child_r, child_w, fds = request.get("child_r"), request.get("child_w"), request.get("fds")
    if not (isinstance(child_r, int) and isinstance(child_w, int) and isinstance(fds, list)):
        return False
    with contextlib.suppress(OSError):  # the client is gone
        os.write(child_w, bytes([error.errno if error.errno and error.errno < 256 else 0]))
    # The answer's pipe first, so a client that finds the start data's pipe closed can read it.
    for fd in (child_w, child_r, *fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    return True


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send this process ``signum`` when the thread that started it ends (0: none)."""
    import ctypes  # only here: a few milliseconds that no other process needs to spend

    with contextlib.suppress(OSError, AttributeError):  # not Linux: no such call
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
