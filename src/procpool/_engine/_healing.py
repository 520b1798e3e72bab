"""`Healing`: how a pool's worker slots get new workers, and when they let one go.

Every worker a slot starts after the pool's start comes from `Healing.spawn`, which

- hands over a warm spare when there is one: once a pool has replaced a worker (a recycle, a
  crash, a kill), it keeps one spare started in the background, so the next replacement does not
  wait for a process start;
- starts a worker again if one dies during its start (a SIGKILL from outside), a few times;
- marks the pool broken when the initializer raises in a new worker: the tasks still waiting and
  every new call then fail at once with that `InitializerError`, instead of each starting (and
  failing) a worker of its own.

It also holds the per-worker limits a slot checks: memory, crashes per task, idle time.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio

from .._errors import InitializerError, WorkerCrashedError
from ._process import WorkerProcess

_START_ATTEMPTS = 5  # starts of one worker killed before ready, before its task fails
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int | None:
    """A process's resident memory, from ``/proc`` (one small read); None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class Healing:
    def __init__(
        self,
        spawn: Callable[[], Awaitable[WorkerProcess]],
        start_soon: Callable[[Callable[[], Coroutine[Any, Any, None]]], object],
        *,
        max_memory_per_worker: int | None,
        max_crashes_per_task: int,
        idle_timeout: float | None,
        min_workers: int,
        on_broken: Callable[[], None],
    ) -> None:
        self._spawn = spawn
        self._start_soon = start_soon
        self.max_memory = max_memory_per_worker
        self.max_crashes = max_crashes_per_task
        self.idle_timeout = idle_timeout
        self.min_workers = min_workers
        self._on_broken = on_broken
        self.broken: InitializerError | None = None
        self.live_workers = 0  # maintained by the slots, for idle shrinking
        self._spare: WorkerProcess | None = None
        self._spares_wanted = False  # set by the first replacement
        self._making_spare = False
        self._closed = False

    def broken_error(self) -> InitializerError:
        """A fresh error for one more task of a broken pool, with the initializer's failure as cause."""
        assert self.broken is not None
        error = InitializerError(f"{self.broken.args[0]}; the pool is broken and runs no more tasks")
        error.__cause__ = self.broken.__cause__
        return error

    async def spawn(self) -> WorkerProcess:
        """A worker to replace one that was recycled, crashed or killed: the warm spare if there
        is one, else a new one. From now on the pool keeps a spare.

        Raises:
            InitializerError: the initializer raised (the pool is now broken), or had before.
            WorkerCrashedError: the worker died during its start, every time it was tried.
        """
        self._spares_wanted = True
        return await self.restart()

    async def restart(self) -> WorkerProcess:
        """A worker for a slot that has none (it idled out, or its start failed); as `spawn`, but
        it does not make the pool keep a spare.
        """
        if self.broken is not None:
            raise self.broken_error()
        worker = self._take_spare()
        if worker is None:
            worker = await self._start()
        self._refill()
        return worker

    def _take_spare(self) -> WorkerProcess | None:
        spare, self._spare = self._spare, None
        if spare is not None and spare.has_exited():
            spare.kill_now()  # killed while it waited; it has exited, so this only reaps it
            return None
        return spare

    async def _start(self) -> WorkerProcess:
        for attempt in range(_START_ATTEMPTS):
            try:
                return await self._spawn()
            except InitializerError as exc:
                if self.broken is None:
                    self.broken = exc
                    self._on_broken()
                raise
            except WorkerCrashedError:
                if attempt == _START_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _refill(self) -> None:
        if self._spares_wanted and self._spare is None and not self._making_spare and not self._closed:
            self._making_spare = True
            self._start_soon(self._make_spare)

    async def _make_spare(self) -> None:
        try:
            worker = await self._start()
        except Exception:
            return  # a broken pool has no use for spares; a crashed start is retried on demand
        finally:
            self._making_spare = False
        if self._closed or self._spare is not None:
            with anyio.CancelScope(shield=True):
                await worker.stop(0)
        else:
            self._spare = worker

    async def drop_spare(self, grace: float) -> None:
        """Stop the spare, if any (the pool shrinks or closes)."""
        spare, self._spare = self._spare, None
        if spare is not None:
            await spare.stop(grace)

    async def close(self, grace: float) -> None:
        self._closed = True
        await self.drop_spare(grace)

    def over_memory(self, worker: WorkerProcess) -> bool:
        rss = rss_bytes(worker.pid)
        return self.max_memory is not None and rss is not None and rss > self.max_memory
