"""How the owner has multiprocessing start its processes: the context for a start method,
multiprocessing's forkserver (started as a pool is created, forgotten by a forked process), and a
main module that starts a pool as it is imported.

Stdlib only: `Pool(...)` starts the forkserver with it before the engine is imported, so that the
forkserver's own start (an interpreter, then the main module and the child side to import) runs
beside the engine's import instead of after it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
from multiprocessing import forkserver, resource_tracker, spawn

from ._forkserver import READY_MODULE, main_by_name_entry, preload_list

TYPE_CHECKING = False  # typing's, without importing typing (see `procpool/__init__`)
if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from typing import Any, NoReturn

# multiprocessing reaps finished children from inside Process.start() (and active_children()),
# so starting a worker in one thread while reading another's exit status in the event loop could
# race for the same status; this lock serialises our side of both, and the forkserver's start.
mp_lock = threading.Lock()
WORKER_NAME = "procpool-worker"
# The exit status of a process that stopped because the main module it was importing starts a pool
# (see `worker_context`): sysexits' "configuration error".
MAIN_MODULE_STARTS_POOL = 78
_CHILD_SIDE = "procpool._child"  # what a worker runs: preloaded by the forkserver


def worker_context(start_method: str) -> BaseContext:
    """The multiprocessing context that starts workers with ``start_method``.

    Called before starting any process. In a process that is importing the main module for
    multiprocessing (a worker, or a forkserver preloading it), it ends that process: the main
    module starts processes as it is imported, which it must not (see `_stop_importing_main`).
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        _stop_importing_main()
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        # A worker needs only the child side (the main module aside): imported once in the
        # forkserver, it comes with each fork for free. The preload list is process-wide, so add
        # to it rather than replace it. It is read when the forkserver starts, which imports the
        # main module first (from Python 3.13.8 on, a script) and `READY_MODULE` last (which
        # imports a main module run by name).
        preload = list(getattr(forkserver._forkserver, "_preload_modules", ["__main__"]))
        wanted = [_CHILD_SIDE, main_by_name_entry(), READY_MODULE]
        missing = [name for name in wanted if name is not None and name not in preload]
        if missing:
            context.set_forkserver_preload([*preload, *missing])
    return context


def start_forkserver_early(start_method: str) -> None:
    """Start multiprocessing's forkserver, if ``start_method`` uses it and it does not run yet,
    without waiting for it: a new pool's first step, before the engine is imported.

    Never blocks the caller (an event loop, often): while another thread starts a process, which
    may wait long for the forkserver's answer, that start starts the forkserver anyway. Only
    from the main thread: while the forkserver imports the main module it dies with the thread
    that started it (see `_forkserver.die_with_owner_while_importing_main`), which must outlive
    that import, as the main thread does (the engine's start waits for the answer instead). Not
    in a worker, nor in a process importing the main module for multiprocessing: a module that
    creates a pool as it is imported (an app's, opened by its lifespan) is imported there too,
    where the pool is never opened.
    """
    process = multiprocessing.current_process()
    if (
        start_method != "forkserver"
        or threading.current_thread() is not threading.main_thread()
        or process.name == WORKER_NAME
        or getattr(process, "_inheriting", False)
        or not mp_lock.acquire(blocking=False)
    ):
        return
    try:
        worker_context(start_method)
        # multiprocessing starts its resource tracker first, an interpreter of its own, which on
        # a small machine takes CPU time from the forkserver's start; the first worker's start
        # starts it anyway (each worker is handed its descriptor), once the engine is imported.
        tracker_start = resource_tracker.ensure_running
        resource_tracker.ensure_running = _tracker_started_later
        try:
            start_forkserver()
        finally:
            resource_tracker.ensure_running = tracker_start
    except OSError:
        pass  # a resource limit, say: the pool's own start tries again, and says why it cannot
    finally:
        mp_lock.release()


def _tracker_started_later() -> None:
    pass


def start_forkserver() -> None:
    """Start multiprocessing's forkserver unless it runs, importing the main module itself, as
    it does from Python 3.13.8 on: older ones are handed its path under a key they do not read.
    Called with `mp_lock` held.

    Each worker then inherits the main module's imports (an application's asyncio, its web
    framework, numpy) from the forkserver, instead of importing them again as it starts (a fork
    of an old forkserver imports the main module itself). `_stop_importing_main` and
    `_forkserver.die_with_owner_while_importing_main` deal with a main module that lacks its
    ``if __name__ == "__main__":`` guard, as they do on newer Pythons.
    """
    prepare = spawn.get_preparation_data

    def with_main_path(name: str) -> dict[str, Any]:
        data = prepare(name)
        if "init_main_from_path" in data:
            data.setdefault("main_path", data["init_main_from_path"])
        return data

    spawn.get_preparation_data = with_main_path
    try:
        forkserver.ensure_running()
    finally:
        spawn.get_preparation_data = prepare


def _stop_importing_main() -> NoReturn:
    """End this process, which imports the main module for multiprocessing and was asked to start
    a pool (or a process) by it: the main module lacks ``if __name__ == "__main__":``.

    multiprocessing would raise its "bootstrapping phase" RuntimeError here, whose traceback each
    such process prints before the rest of the script runs on in it. Instead the process exits at
    once with `MAIN_MODULE_STARTS_POOL`, which the pool that started it turns into one error that
    names the fix (`_engine`'s ``main_module_starts_pool``). A pool's worker, or the forkserver
    that procpool had started, says nothing, as the pool reports; any other process (a child
    multiprocessing started for other code) says in a line what happened.
    """
    if multiprocessing.current_process().name != WORKER_NAME and READY_MODULE not in preload_list():
        main = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c") else "the main module"
        print(
            f"procpool: process {os.getpid()} stops: importing {main} for multiprocessing, it was asked "
            'to start a pool; the code that starts one belongs under `if __name__ == "__main__":`',
            file=sys.stderr,
        )
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # closed or replaced: nothing more to write anyway
            stream.flush()
    os._exit(MAIN_MODULE_STARTS_POOL)


def _reset_after_fork() -> None:
    """In a process just forked by ``os.fork`` (a pre-forking server's worker, say), where only
    the forking thread goes on.

    Locks held by the parent's other threads (a worker's start, waiting for the forkserver, holds
    `mp_lock`) are held for good here: released, or this process's first pool would wait for them
    forever. And the forkserver inherited from the parent, which is not this process's child, is
    dropped, so that its first pool starts one of its own: multiprocessing would instead wait for
    the parent's forkserver to see if it still runs, and fail with ChildProcessError. The parent's
    forkserver is left alone, its socket included; only this process's copy of the descriptor
    that keeps it alive is closed, so it still ends with its owner.
    """
    server: Any = forkserver._forkserver
    for lock in (mp_lock, getattr(server, "_lock", None)):
        if isinstance(lock, type(mp_lock)) and lock.locked():
            lock.release()  # a plain Lock: any thread may release it
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if getattr(server, "_forkserver_pid", None) is None:
        return
    for name in ("_forkserver_pid", "_forkserver_address", "_forkserver_alive_fd", "_forkserver_authkey"):
        if hasattr(server, name):
            setattr(server, name, None)
    if isinstance(alive_fd, int):
        with contextlib.suppress(OSError):
            os.close(alive_fd)


os.register_at_fork(after_in_child=_reset_after_fork)
