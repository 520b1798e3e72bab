"""procpool: await CPU-bound work in other processes, as naturally as awaiting a socket."""

from ._api._default import configure_default_pool as configure_default_pool
from ._api._default import default_pool as default_pool
from ._api._default import run_sync as run_sync
from ._api._executor import PoolExecutor as PoolExecutor
from ._api._map import MapIterator as MapIterator
from ._api._map import as_completed as as_completed
from ._api._pool import Pool as Pool
from ._api._pool import PoolOptions as PoolOptions
from ._api._stream import StreamIterator as StreamIterator
from ._child._reports import report_progress as report_progress
from ._core._observe import PoolStats as PoolStats
from ._core._observe import TaskEnded as TaskEnded
from ._core._observe import TaskStarted as TaskStarted
from ._core._observe import TaskTiming as TaskTiming
from ._core._observe import WorkerExited as WorkerExited
from ._core._observe import WorkerStarted as WorkerStarted
from ._core._task import Task as Task
from ._dask._pool import DaskPool as DaskPool
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
from ._ipc._barrier import Barrier as Barrier
from ._ipc._barrier import BrokenBarrierError as BrokenBarrierError
from ._ipc._pipe import Connection as Connection
from ._ipc._pipe import Pipe as Pipe
from ._ipc._process import Process as Process
from ._ipc._queue import Queue as Queue
from ._ipc._queue import QueueClosedError as QueueClosedError
from ._ipc._shared import Manager as Manager
from ._ipc._shared import SharedDict as SharedDict
from ._ipc._shared import SharedList as SharedList
from ._ipc._sync import BoundedSemaphore as BoundedSemaphore
from ._ipc._sync import Condition as Condition
from ._ipc._sync import Event as Event
from ._ipc._sync import Lock as Lock
from ._ipc._sync import Semaphore as Semaphore
from ._sizing import available_cpus as available_cpus

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
