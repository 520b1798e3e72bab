"""procpool for FastAPI apps: a lifespan that owns the pool, and dependencies that hand it out.

::

    from procpool.integrations.fastapi import PoolDep, QueueLimit, pool_lifespan

    app = FastAPI(lifespan=pool_lifespan())
    BusyAwarePool = Annotated[procpool.Pool, Depends(QueueLimit(max_queued=8))]

    @app.get("/digest")
    async def digest(pool: BusyAwarePool, n: int) -> str:
        return await pool.run(work, n)  # a 503 with Retry-After instead, when 8 tasks already wait

In tests, `procpool.testing.override_pool` replaces the pool that every one of these dependencies
hands out (``app.dependency_overrides[get_pool]``).
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time, and older
# releases do not resolve string annotations on a callable instance's `__call__`.
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from .._api import Pool
from . import starlette as _starlette
from .starlette import STATE_KEY as STATE_KEY
from .starlette import pool_from as pool_from
from .starlette import pool_lifespan as pool_lifespan


async def get_pool(connection: HTTPConnection) -> Pool:
    """The FastAPI dependency that hands an endpoint the app's pool; the key to override in tests.

    An ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in its thread pool, a
    thread hop per request that a busy server can do without.

    Args:
        connection: the request or websocket (FastAPI passes it).

    Returns:
        The pool that `pool_lifespan` started.

    Raises:
        RuntimeError: the app's lifespan is not `pool_lifespan`, or it did not run.
    """
    return pool_from(connection)


PoolDep = Annotated[Pool, Depends(get_pool)]
"""An endpoint parameter annotated ``pool: PoolDep`` receives the app's pool."""


class QueueLimit(_starlette.QueueLimit):
    """A dependency that hands over the app's pool, or answers 503 with ``Retry-After`` when
    ``max_queued`` tasks or more already wait for a worker.

    Use it as ``Annotated[procpool.Pool, Depends(QueueLimit(max_queued=8))]``, or in a route's
    ``dependencies=[Depends(...)]``. It takes the pool from `get_pool`, so overriding `get_pool`
    in tests overrides it too.

    Args:
        max_queued: refuse new work while at least this many tasks wait for a worker.
        retry_after: seconds the client is told to wait (the ``Retry-After`` header).

    Raises:
        ValueError: ``max_queued`` is not a positive integer, or ``retry_after`` not an integer >= 0.
    """

    async def __call__(self, pool: PoolDep) -> Pool:
        """Check the queue and return the pool (FastAPI calls this for each request).

        Args:
            pool: the app's pool, from `get_pool`.

        Returns:
            ``pool``, when fewer than ``max_queued`` tasks wait.

        Raises:
            starlette.exceptions.HTTPException: status 503 with a ``Retry-After`` header (FastAPI's
                ``HTTPException`` derives from it and FastAPI answers it the same way).
        """
        self.check(pool)
        return pool


__all__ = ("STATE_KEY", "PoolDep", "QueueLimit", "get_pool", "pool_from", "pool_lifespan")
