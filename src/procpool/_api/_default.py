"""The default pool: one per event loop, started on first use, closed with the loop."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

import anyio
from anyio.lowlevel import RunVar, RunvarToken

from ._host import start_loop_task
from ._pool import Pool

P = ParamSpec("P")
T = TypeVar("T")

WORKERS_VARIABLE = "PROCPOOL_WORKERS"

_options: dict[str, Any] = {}
_current: RunVar[_DefaultPool] = RunVar("procpool_default_pool")


def configure_default_pool(workers: int | None = None, **options: Any) -> None:
    """Set the size and options of default pools started from now on.

    Call it before the first `run_sync` (a default pool already running in an event loop keeps its
    settings). Without it, the size comes from the ``PROCPOOL_WORKERS`` environment variable, or
    else the usable CPUs.

    Args:
        workers: number of worker processes, or None for the default.
        options: any keyword argument of `Pool` (``initializer``, ``max_tasks_per_worker``...).

    Raises:
        TypeError: an option `Pool` does not take (the message lists those it takes).
        ValueError, TypeError: as `Pool` raises them for bad values.
    """
    known = [name for name, p in inspect.signature(Pool).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(
            f"configure_default_pool() got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"it takes workers and Pool's options: {', '.join(known)}"
        )
    Pool(workers, **options)  # Pool's own checks, now at the call site rather than at first use
    _options.clear()
    _options.update(options, workers=workers)


def _pool_options() -> dict[str, Any]:
    options = dict(_options)
    if options.get("workers") is None and os.environ.get(WORKERS_VARIABLE):
        try:
            options["workers"] = int(os.environ[WORKERS_VARIABLE])
        except ValueError:
            raise ValueError(
                f"{WORKERS_VARIABLE} must be a whole number of workers, not {os.environ[WORKERS_VARIABLE]!r}"
            ) from None
    return options


class _DefaultPool:
    """Hosts a pool in a background task of its own, so it outlives the coroutine that asked for it."""

    def __init__(self) -> None:
        self.ready = anyio.Event()
        self.pool: Pool | None = None
        self.error: BaseException | None = None
        self.token: RunvarToken[_DefaultPool] | None = None

    def start(self) -> None:
        # When the loop ends, this task is cancelled, which closes the pool and stops its workers.
        start_loop_task(self._serve, "procpool default pool")

    async def _serve(self) -> None:
        try:
            async with Pool(**_pool_options()) as pool:
                self.pool = pool
                self.ready.set()
                await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # reported to the callers waiting for the pool
            self.error = exc
            self.ready.set()


async def default_pool() -> Pool:
    """The default pool of the running event loop, started on first use.

    Raises:
        Exception: whatever starting the pool raised (for example `InitializerError`); the next
            call tries again.
    """
    try:
        holder = _current.get()
    except LookupError:
        holder = _DefaultPool()
        holder.token = _current.set(holder)
        holder.start()
    await holder.ready.wait()
    if holder.error is not None:
        if holder.token is not None:
            _current.reset(holder.token)
            holder.token = None
        raise holder.error
    assert holder.pool is not None
    return holder.pool


@overload
async def run_sync(fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
@overload
async def run_sync(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
async def run_sync(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` on the default pool of the running event loop.

    The same as ``await (await procpool.default_pool()).run(fn, *args, **kwargs)``: results,
    errors and cancellation behave as in `Pool.run`.
    """
    pool = await default_pool()
    return await pool.run(fn, *args, **kwargs)
