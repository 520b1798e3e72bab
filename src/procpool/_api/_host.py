"""Tasks that belong to the event loop rather than to the task that starts them: they host what
must outlive that task, the default pool and the pools opened with ``await pool.open()``.

A backend enters a task group when it opens, and a task group must be left by the task that
entered it. A notebook runs each cell, and ``python -m asyncio`` each statement, in a task of its
own, so a pool entered in one cell could not be closed in the next. A pool opened with
``open()`` is entered instead by a host task of its own, which runs ``async with pool`` until
``aclose`` (from any task) tells it to leave: the pool behaves as in ``async with`` in every way.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

# asyncio keeps only weak references to tasks: the hosts are kept here until they end.
_asyncio_hosts: set[asyncio.Task[None]] = set()


def _in_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def start_loop_task(fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
    """Run ``fn()`` in a new task of the running event loop that no other task is the parent of.

    Under trio, a system task; under asyncio (uvloop too), a task of the loop. Either way it is
    cancelled when the loop ends: ``asyncio.run`` cancels the tasks left, trio its system tasks
    once the main task returns. ``fn`` must raise nothing but a cancellation: an exception from
    a trio system task ends the whole run.
    """
    if _in_trio():
        import trio

        trio.lowlevel.spawn_system_task(fn, name=name, context=contextvars.copy_context())
    else:
        task = asyncio.get_running_loop().create_task(fn(), name=name)
        _asyncio_hosts.add(task)
        task.add_done_callback(_asyncio_hosts.discard)


class PoolHost:
    """Holds a pool open in a host task (`start_loop_task`) from `open` to `close`, which any
    task of the loop may call."""

    def __init__(self, pool: AbstractAsyncContextManager[object]) -> None:
        self._pool = pool  # its ``async with`` is what the host runs
        self._scope = anyio.CancelScope()  # cancelled to abort: leave ``async with`` by a cancellation
        self._opened = anyio.Event()
        self._leave = anyio.Event()
        self._left = anyio.Event()
        self._error: Exception | None = None  # raised by `open` or, if it came later, by `close`

    async def open(self) -> None:
        """Start the host and return once the pool is open.

        Raises:
            Exception: what opening raised (`InitializerError`...); the pool is closed then.
        """
        start_loop_task(self._serve, "procpool pool host")
        await self._wait(self._opened)
        self._raise_error()

    async def close(self) -> None:
        """Leave ``async with`` normally: wait for the submitted tasks, then stop the workers.
        Cancelled meanwhile, cancel the tasks instead (as an exception in ``async with`` would)
        and wait until the workers are stopped. Safe to call more than once."""
        self._leave.set()
        await self._wait(self._left)
        self._raise_error()

    async def _wait(self, event: anyio.Event) -> None:
        try:
            await event.wait()
        except BaseException:
            self._scope.cancel()
            with anyio.CancelScope(shield=True):
                await self._left.wait()  # not long: what runs is killed, after kill_grace at most
            raise

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    async def _serve(self) -> None:
        try:
            with self._scope:
                async with self._pool:
                    self._opened.set()
                    await self._leave.wait()
        except Exception as exc:  # opening failed, or (rarely) a task of the backend did
            self._error = exc
        finally:
            self._opened.set()
            self._left.set()
