"""procpool: await CPU-bound work in other processes, as naturally as awaiting a socket.

Every public name is imported on first use (PEP 562), so ``import procpool`` costs a few
milliseconds, and a worker or the forkserver, which import it with the main module, load only
the child side they run.
"""

from __future__ import annotations

from ._forkserver import die_with_owner_while_importing_main
from ._lazy import import_on_first_use

TYPE_CHECKING = False  # typing's, without the import (typing takes milliseconds to import)
if TYPE_CHECKING:
    from ._api import MapIterator as MapIterator
    from ._api import Pool as Pool
    from ._api import PoolExecutor as PoolExecutor
    from ._api import PoolOptions as PoolOptions
    from ._api import StreamIterator as StreamIterator
    from ._api import as_completed as as_completed
    from ._api import configure_default_pool as configure_default_pool
    from ._api import default_pool as default_pool
    from ._api import run_sync as run_sync
    from ._child import report_progress as report_progress
    from ._core import PoolStats as PoolStats
    from ._core import Task as Task
    from ._core import TaskEnded as TaskEnded
    from ._core import TaskStarted as TaskStarted
    from ._core import TaskTiming as TaskTiming
    from ._core import WorkerExited as WorkerExited
    from ._core import WorkerStarted as WorkerStarted
    from ._dask import DaskPool as DaskPool
    from ._errors import InitializerError as InitializerError
    from ._errors import InvalidStateError as InvalidStateError
    from ._errors import PoisonTaskError as PoisonTaskError
    from ._errors import PoolClosedError as PoolClosedError
    from ._errors import PoolFullError as PoolFullError
    from ._errors import ProcpoolError as ProcpoolError
    from ._errors import RemoteError as RemoteError
    from ._errors import RemoteTraceback as RemoteTraceback
    from ._errors import SerializationError as SerializationError
    from ._errors import TaskCancelledError as TaskCancelledError
    from ._errors import WorkerCrashedError as WorkerCrashedError
    from ._ipc import Barrier as Barrier
    from ._ipc import BoundedSemaphore as BoundedSemaphore
    from ._ipc import BrokenBarrierError as BrokenBarrierError
    from ._ipc import Condition as Condition
    from ._ipc import Connection as Connection
    from ._ipc import Event as Event
    from ._ipc import Lock as Lock
    from ._ipc import LockHolderDiedError as LockHolderDiedError
    from ._ipc import Manager as Manager
    from ._ipc import Pipe as Pipe
    from ._ipc import Process as Process
    from ._ipc import Queue as Queue
    from ._ipc import QueueClosedError as QueueClosedError
    from ._ipc import Semaphore as Semaphore
    from ._ipc import SharedDict as SharedDict
    from ._ipc import SharedList as SharedList
    from ._sizing import available_cpus as available_cpus

die_with_owner_while_importing_main()

# Where each public name lives.
_HOMES = {
    "MapIterator": "._api",
    "Pool": "._api",
    "PoolExecutor": "._api",
    "PoolOptions": "._api",
    "StreamIterator": "._api",
    "as_completed": "._api",
    "configure_default_pool": "._api",
    "default_pool": "._api",
    "run_sync": "._api",
    "report_progress": "._child",
    "PoolStats": "._core",
    "Task": "._core",
    "TaskEnded": "._core",
    "TaskStarted": "._core",
    "TaskTiming": "._core",
    "WorkerExited": "._core",
    "WorkerStarted": "._core",
    "DaskPool": "._dask",
    "InitializerError": "._errors",
    "InvalidStateError": "._errors",
    "PoisonTaskError": "._errors",
    "PoolClosedError": "._errors",
    "PoolFullError": "._errors",
    "ProcpoolError": "._errors",
    "RemoteError": "._errors",
    "RemoteTraceback": "._errors",
    "SerializationError": "._errors",
    "TaskCancelledError": "._errors",
    "WorkerCrashedError": "._errors",
    "Barrier": "._ipc",
    "BoundedSemaphore": "._ipc",
    "BrokenBarrierError": "._ipc",
    "Condition": "._ipc",
    "Connection": "._ipc",
    "Event": "._ipc",
    "Lock": "._ipc",
    "LockHolderDiedError": "._ipc",
    "Manager": "._ipc",
    "Pipe": "._ipc",
    "Process": "._ipc",
    "Queue": "._ipc",
    "QueueClosedError": "._ipc",
    "Semaphore": "._ipc",
    "SharedDict": "._ipc",
    "SharedList": "._ipc",
    "available_cpus": "._sizing",
}

__all__ = (
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Connection",
    "DaskPool",
    "Event",
    "InitializerError",
    "InvalidStateError",
    "Lock",
    "LockHolderDiedError",
    "Manager",
    "MapIterator",
    "Pipe",
    "PoisonTaskError",
    "Pool",
    "PoolClosedError",
    "PoolExecutor",
    "PoolFullError",
    "PoolOptions",
    "PoolStats",
    "Process",
    "ProcpoolError",
    "Queue",
    "QueueClosedError",
    "RemoteError",
    "RemoteTraceback",
    "Semaphore",
    "SerializationError",
    "SharedDict",
    "SharedList",
    "StreamIterator",
    "Task",
    "TaskCancelledError",
    "TaskEnded",
    "TaskStarted",
    "TaskTiming",
    "WorkerCrashedError",
    "WorkerExited",
    "WorkerStarted",
    "as_completed",
    "available_cpus",
    "configure_default_pool",
    "default_pool",
    "report_progress",
    "run_sync",
)


if not TYPE_CHECKING:  # type checkers see the imports above, and call any other name an error
    __getattr__ = import_on_first_use(__name__, _HOMES)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
