"""How many pool workers one web server process should start, when the server runs several."""

from __future__ import annotations

import os
import warnings

from .._api import check_positive_int
from .._sizing import available_cpus

_WEB_CONCURRENCY = "WEB_CONCURRENCY"


def web_pool_size(workers: int | None = None, *, web_processes: int | None = None) -> int:
    """The number of pool workers for one web server process.

    ``uvicorn --workers N`` and gunicorn run N copies of the app, each with its own lifespan and so
    its own pool: N pools of ``workers`` each. By default the CPUs are shared out between them.

    Args:
        workers: pool workers per web process; None shares the CPUs this process may use among the
            web processes, at least one each.
        web_processes: how many web processes serve the app on this machine; None reads
            ``$WEB_CONCURRENCY`` (which uvicorn and gunicorn also read as their worker count), or 1
            when it is not set. ``uvicorn --workers N`` does not set it: pass N here, or set
            ``WEB_CONCURRENCY=N`` instead of using ``--workers``.

    Returns:
        The pool size to use in this web process.

    Raises:
        ValueError: ``workers`` or ``web_processes`` (or ``$WEB_CONCURRENCY``) is not a positive integer.

    Warns:
        RuntimeWarning: the web processes would start more pool workers in all than there are CPUs;
            CPU-bound tasks would then slow each other down and take CPU time from the event loops.
            The warning names the fix: fewer workers per web process, or, where even one each is
            too many, fewer web processes.
    """
    check_positive_int("workers", workers, optional=True)
    check_positive_int("web_processes", web_processes, optional=True)
    if web_processes is not None:
        source = f" (web_processes={web_processes})"
    elif _WEB_CONCURRENCY in os.environ:
        web_processes = _web_concurrency()
        source = f" (${_WEB_CONCURRENCY}={web_processes})"
    else:
        web_processes, source = 1, ""
    cpus = available_cpus()
    fitting = cpus // web_processes  # workers per web process that keep the total within the CPUs
    if workers is None:
        workers = max(1, fitting)
    total = workers * web_processes
    if total > cpus:
        if fitting:
            fix = f"use workers={fitting} per web process, or leave workers unset to share the CPUs out"
        else:  # one worker each is already too many: only fewer web processes help
            fix = f"run at most {_count(cpus, 'web process')} to keep the pools within the CPUs"
            fix += ", with workers=1 per web process" if workers > 1 else " (one pool worker each is the least)"
        warnings.warn(
            f"{_count(web_processes, 'web process')}{source} x {_count(workers, 'pool worker')} = "
            f"{total} worker processes for {_count(cpus, 'CPU')}: CPU-bound tasks will slow each other down "
            f"and the event loops will wait for a CPU; {fix}",
            RuntimeWarning,
            stacklevel=2,
        )
    return workers


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}es" if noun.endswith("s") else f"{number} {noun}s"


def _web_concurrency() -> int:
    value = os.environ.get(_WEB_CONCURRENCY)
    if value is None:
        return 1
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"${_WEB_CONCURRENCY} must be a positive integer (the number of web processes), not {value!r}")
    return count
