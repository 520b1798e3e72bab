"""One worker slot: pulls tasks from the pool's queue and runs them on its worker process.

Each slot owns at most one worker process at a time and one task on it. Scheduling is pull-based:
an idle slot takes the next task from the pool's FIFO queue, so no central scheduler has to track
who is idle. The slot is also the only reader of its worker's channel, so a frame always reaches
the task that is running there, and a dead worker fails only that task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from . import _wire
from ._process import WorkerProcess
from ._task import Task


class WorkerSlot:
    def __init__(
        self,
        spawn: Callable[[], Awaitable[WorkerProcess]],
        queue: MemoryObjectReceiveStream[Task[Any]],
        *,
        max_tasks_per_worker: int | None,
        kill_grace: float,
    ) -> None:
        self._spawn = spawn
        self._queue = queue
        self._max_tasks = max_tasks_per_worker
        self._kill_grace = kill_grace
        self.worker: WorkerProcess | None = None

    async def run(self, worker: WorkerProcess | None) -> None:
        """Serve tasks until the queue is closed and drained; then stop the worker."""
        self.worker = worker
        try:
            async for task in self._queue:
                if task.done():
                    continue  # cancelled while queued: it never starts
                if self.worker is None:
                    try:
                        self.worker = await self._spawn()
                    except Exception as exc:
                        task._set_exception(exc)
                        continue
                await self._run_task(self.worker, task)
        finally:
            self._queue.close()
            with anyio.CancelScope(shield=True):
                await self._retire()

    async def _run_task(self, worker: WorkerProcess, task: Task[Any]) -> None:
        if await self._execute(worker, task):
            worker.tasks_run += 1
            if self._max_tasks is None or worker.tasks_run < self._max_tasks:
                return
        # Replace the worker now, before the next task arrives (warm replacement).
        await self._retire()
        try:
            self.worker = await self._spawn()
        except Exception:
            self.worker = None  # the next task retries the start, and fails with its error

    async def _retire(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            await worker.stop(self._kill_grace)

    async def _execute(self, worker: WorkerProcess, task: Task[Any]) -> bool:
        """Run one task; True if the worker can take another."""
        interrupt = anyio.CancelScope()
        call = task._start(interrupt.cancel)
        if call is None:
            return True
        link = task._stream
        frame: _wire.Frame | None = None
        try:
            with interrupt:
                await worker.send_call(_wire.CALL if link is None else _wire.STREAM, task.id, *call)
                if link is not None:
                    await link.attach(task.id, worker.send)
                while (frame := await worker.receive()) is not None:
                    if frame.kind == _wire.ITEM and link is not None:
                        link.deliver(frame.body)
                    elif frame.task_id == task.id:
                        break
        except BaseException:
            # The pool is being torn down around this task: kill, then let the error go on.
            with anyio.CancelScope(shield=True):
                await worker.terminate(self._kill_grace)
            task._set_cancelled()
            raise
        finally:
            if link is not None:
                link.detach()
        if interrupt.cancel_called:  # Task.cancel() with kill_on_cancel
            await worker.terminate(self._kill_grace)
            task._set_cancelled()
            return False
        if frame is None:  # end of file: the worker died mid-task
            await worker.wait_exit()
            task._set_exception(worker.crash_error(task.description))
            return False
        if frame.kind == _wire.RESULT:
            task._set_result_bytes(frame.body)
        else:
            task._set_exception(_wire.unpack_exception(frame.body))
        return True
