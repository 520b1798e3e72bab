"""`StreamLink`: the parent's side of one stream, shared by the backend that runs it and the
consumer's `StreamIterator`.

Flow control is credit-based: the worker may send only as many items as the parent has granted,
and the parent grants more as the consumer takes items, so at most `WINDOW` items wait in the
parent however slow the consumer is.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable

import anyio

from .._transport import Received, wire

WINDOW = 8  # items the worker may send ahead of the consumer

Send = Callable[[list[bytes]], None]  # sends frames to the worker without waiting


class StreamLink:
    """The parent's side of one stream, shared by the worker slot and the consumer."""

    def __init__(self) -> None:
        self.items: deque[tuple[wire.Body, Received | None]] = deque()  # pickled, with out-of-band buffers
        self._wakeup = anyio.Event()
        self._send: Send | None = None
        self._task_id = 0
        self._attached = anyio.Event()
        self._taken_since_grant = 0

    # -- the slot's side -----------------------------------------------------------------------

    def attach(self, task_id: int, send: Send) -> None:
        """The stream started on a worker: grant the first window of items."""
        send(wire.encode_credit(task_id, WINDOW))
        self._task_id, self._send = task_id, send
        self._attached.set()

    def deliver(self, body: wire.Body, buffers: Received | None = None) -> None:
        self.items.append((body, buffers))
        self.wake()

    def detach(self) -> None:
        """The stream's task is done: nothing more is sent to the worker; the consumer wakes."""
        self._send = None
        self._attached.set()
        self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    # -- the consumer's side -------------------------------------------------------------------

    async def wait(self) -> None:
        self._wakeup = anyio.Event()
        await self._wakeup.wait()

    async def took_item(self) -> None:
        self._taken_since_grant += 1
        if self._taken_since_grant >= WINDOW // 2:  # grant in batches: fewer frames
            self._write(wire.encode_credit(self._task_id, self._taken_since_grant))
            self._taken_since_grant = 0

    async def close(self) -> None:
        await self._attached.wait()
        self._write(wire.encode(wire.CLOSE, self._task_id))

    def _write(self, frame: list[bytes]) -> None:
        if self._send is not None:
            with contextlib.suppress(OSError):  # the worker is gone; its slot reports that via the task
                self._send(frame)
