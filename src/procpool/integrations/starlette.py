"""procpool for Starlette apps, and any framework built on Starlette.

One pool per web process, started by the app's lifespan (never at import time, so ``--reload`` and
``uvicorn --workers N`` re-import the app safely) and closed on shutdown::

    app = Starlette(routes=routes, lifespan=pool_lifespan())

    limit = QueueLimit(max_queued=8)

    async def digest(request: Request) -> JSONResponse:
        pool = pool_from(request)
        limit.check(pool)  # 503 with Retry-After when 8 tasks already wait for a worker
        return JSONResponse(await pool.run(work, ...))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypedDict, Unpack

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from .._api import Pool, check_positive_int
from ._sizing import web_pool_size

STATE_KEY = "procpool_pool"
"""The key of the pool in the lifespan state (``request.state.procpool_pool``)."""

AppLifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]
"""An app's own lifespan: called with the app, an async context manager yielding a state or None."""


class PoolKeywords(TypedDict, total=False):
    """The `procpool.Pool` options that `pool_lifespan` passes on."""

    initializer: Callable[..., object] | None
    initargs: Iterable[Any]
    max_tasks_per_worker: int | None
    start_method: str | None
    kill_on_cancel: bool
    kill_grace: float
    max_queued: int | None
    max_memory_per_worker: int | None
    max_crashes_per_task: int
    idle_timeout: float | None
    min_workers: int


def pool_lifespan(
    workers: int | None = None,
    *,
    web_processes: int | None = None,
    lifespan: AppLifespan | None = None,
    **pool_options: Unpack[PoolKeywords],
) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """A lifespan that starts one `procpool.Pool` when the app starts and closes it on shutdown.

    Pass it as the app's ``lifespan=``. The pool is put in the lifespan state, where `pool_from`
    finds it. The workers are started and ready before the server accepts its first request; on
    shutdown the pool waits for the tasks still running, then stops its workers.

    Args:
        workers: pool workers per web process; None shares the CPUs among the web processes
            (see `procpool.integrations.web_pool_size`).
        web_processes: how many web processes serve the app (``uvicorn --workers N``); None reads
            ``$WEB_CONCURRENCY``, or 1.
        lifespan: the app's own lifespan, run inside this one while the pool is open; the state it
            yields is merged with the pool's.
        **pool_options: other `procpool.Pool` options (``initializer``, ``max_tasks_per_worker``...).

    Returns:
        A lifespan function: called with the app, it returns an async context manager that
        yields the lifespan state.

    Raises:
        ValueError: ``workers``, ``web_processes`` or a pool option is out of range.
        TypeError: ``lifespan`` is not callable, or an unknown or ill-typed pool option is given.
    """
    check_positive_int("web_processes", web_processes, optional=True)
    if lifespan is not None and not callable(lifespan):
        raise TypeError(f"lifespan must be the app's lifespan function or None, not {type(lifespan).__name__}")
    # Check the pool's options now, where the app is defined, not when the server starts: a Pool
    # that is never entered starts no worker (only multiprocessing's forkserver, a head start for
    # the lifespan's pool; see docs/tuning.md).
    Pool(workers, **pool_options)

    @asynccontextmanager
    async def pool_and_app_lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        # Sized at startup, in the web process itself, where $WEB_CONCURRENCY is what the server saw.
        size = web_pool_size(workers, web_processes=web_processes)
        async with Pool(size, **pool_options) as pool:
            if lifespan is None:
                yield {STATE_KEY: pool}
                return
            async with lifespan(app) as app_state:
                yield {**(app_state or {}), STATE_KEY: pool}

    return pool_and_app_lifespan


def pool_from(connection: HTTPConnection) -> Pool:
    """The app's pool, from a request's (or websocket's) lifespan state.

    Args:
        connection: the request or websocket.

    Returns:
        The pool that `pool_lifespan` started.

    Raises:
        RuntimeError: the app has no pool: its lifespan is not `pool_lifespan`, or it did not run.
    """
    pool = connection.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(pool, Pool):
        raise RuntimeError(
            "this app has no procpool pool: create it with lifespan=pool_lifespan(...) and serve it with a server "
            "that runs lifespans (uvicorn, hypercorn; in tests, asgi_lifespan.LifespanManager), or, in FastAPI tests, "
            "override the pool with procpool.testing.override_pool"
        )
    return pool


class HasQueue(Protocol):
    """What `QueueLimit` looks at: a `procpool.Pool`, or a `procpool.testing.InlinePool`."""

    @property
    def queued(self) -> int:
        """Tasks waiting for a worker."""
        ...


class QueueLimit:
    """Overload protection: answer 503 Service Unavailable, with ``Retry-After``, when too many
    tasks already wait for a worker, rather than queueing more and letting latency grow unbounded.

    Args:
        max_queued: refuse new work while at least this many tasks wait for a worker
            (`procpool.Pool.queued`: tasks not yet started); a few times the pool size
            is a good start.
        retry_after: seconds the client is told to wait (the ``Retry-After`` header).

    Raises:
        ValueError: ``max_queued`` is not a positive integer, or ``retry_after`` not an integer >= 0.
    """

    def __init__(self, max_queued: int, *, retry_after: int = 1) -> None:
        check_positive_int("max_queued", max_queued, optional=False)
        if not isinstance(retry_after, int) or isinstance(retry_after, bool) or retry_after < 0:
            raise ValueError(f"retry_after must be a whole number of seconds >= 0, not {retry_after!r}")
        self.max_queued = max_queued
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_queued={self.max_queued}, retry_after={self.retry_after})"

    def check(self, pool: HasQueue) -> None:
        """Raise a 503 if ``pool`` has ``max_queued`` tasks or more waiting for a worker.

        Args:
            pool: the pool the request is about to use.

        Raises:
            starlette.exceptions.HTTPException: status 503 with a ``Retry-After`` header; Starlette
                (and FastAPI) turn it into the response.
        """
        if pool.queued >= self.max_queued:
            raise HTTPException(
                503,
                detail=f"busy: {pool.queued} tasks are waiting for a worker; retry in {self.retry_after} s",
                headers={"Retry-After": str(self.retry_after)},
            )


__all__ = ("STATE_KEY", "AppLifespan", "HasQueue", "PoolKeywords", "QueueLimit", "pool_from", "pool_lifespan")
