"""Whether the calling task may be in a cancelled scope: asked before each call `run` submits.

A call made in a cancelled scope must never begin: submitting can send it to an idle worker at
once, before the call's first wait would raise. ``anyio.lowlevel.checkpoint_if_cancelled``
answers that, but on asyncio it costs a coroutine and some ten Python calls (properties, a weak
dictionary's lookup) per call, about 1.7 µs of a tiny task's 20-25 µs here. On asyncio, the same
walk up the task's cancel scopes is made here on anyio's own records; only when it finds a
cancelled scope, or cannot read those records (a future anyio), does the call go through anyio's
checkpoint, which raises. asyncio's own pending cancellation of a task that cancelled itself
counts too. One it cannot see: ``asyncio.timeout(0)`` cancels the task only on the next loop
turn, so a call made inside it at once may begin.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import anyio.lowlevel


class CancelCheck(NamedTuple):
    may_be_cancelled: Callable[[], bool]  # False: the task is in no cancelled scope
    checkpoint: Callable[[], Awaitable[None]]  # raises the cancellation if it is


def cancel_check(loop: asyncio.AbstractEventLoop | None = None) -> CancelCheck:
    """The check for the event loop library running now, looked up once (per pool view).
    ``loop``: asyncio's loop that every later call is known to come from, if the backend checks
    that; else the running loop is asked each time (a system call on Python 3.11)."""
    try:
        from anyio._core._eventloop import get_async_backend

        backend = get_async_backend()
        checkpoint: Callable[[], Awaitable[None]] = backend.checkpoint_if_cancelled
    except (ImportError, AttributeError):  # pragma: no cover - a future anyio
        return CancelCheck(_maybe, anyio.lowlevel.checkpoint_if_cancelled)
    if backend.__name__ == "AsyncIOBackend":
        return CancelCheck(_asyncio_check(loop), functools.partial(_asyncio_checkpoint, checkpoint))
    return CancelCheck(_maybe, checkpoint)  # trio's own checkpoint is cheap: always ask it


async def _asyncio_checkpoint(checkpoint: Callable[[], Awaitable[None]]) -> None:
    """anyio's checkpoint, then asyncio's own pending cancellation (a task that cancelled itself:
    ``task.cancel()`` marks a running task, and only its next wait raises), which no anyio scope
    records."""
    await checkpoint()
    task = asyncio.current_task()
    if task is not None and getattr(task, "_must_cancel", False):
        await asyncio.sleep(0)


def _maybe() -> bool:
    return True


def _asyncio_check(loop: asyncio.AbstractEventLoop | None) -> Callable[[], bool]:
    try:
        from anyio._backends._asyncio import _task_states

        states: dict[Any, Any] = _task_states.data  # type: ignore[attr-defined]  # its weak references to tasks
    except (ImportError, AttributeError):  # pragma: no cover - a future anyio
        return _maybe
    # Python 3.11 writes `asyncio.current_task` in Python, around these two C parts.
    current_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = getattr(
        asyncio.tasks, "_current_tasks", None
    )
    running_loop = asyncio._get_running_loop
    current_task = asyncio.current_task
    ref = weakref.ref

    def may_be_cancelled() -> bool:
        try:
            task = current_task() if current_tasks is None else current_tasks.get(loop or running_loop())  # type: ignore[arg-type]
            if task._must_cancel:  # type: ignore[union-attr]  # asyncio's own, pending (see `_asyncio_checkpoint`)
                return True
            state = states.get(ref(task))
            if state is None:
                return False  # anyio holds no cancel scope for this task
            scope = state.cancel_scope
            while scope is not None:
                if scope._cancel_called:
                    return True
                if scope._shield:
                    return False
                scope = scope._parent_scope
            return False
        except (AttributeError, TypeError):  # anyio's records changed, or no task runs
            return True

    return may_be_cancelled
