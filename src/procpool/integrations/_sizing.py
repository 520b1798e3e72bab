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
    """
    check_positive_int("workers", workers, optional=True)
    check_positive_int("web_processes", web_processes, optional=True)
    if web_processes is None:
        web_processes = _web_concurrency()
    cpus = available_cpus()
    if workers is None:
        workers = max(1, cpus // web_processes)
    total = workers * web_processes
    if total > cpus:
        warnings.warn(
            f"{web_processes} web process(es) x {workers} pool worker(s) = {total} worker processes for {cpus} CPU(s): "
            f"CPU-bound tasks will slow each other down and the event loops will wait for a CPU; "
            f"use workers={max(1, cpus // web_processes)} per web process, or fewer web processes",
            RuntimeWarning,
            stacklevel=2,
        )
    return workers


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
