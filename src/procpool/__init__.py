"""procpool: await CPU-bound work in other processes, as naturally as awaiting a socket."""

from ._barrier import Barrier as Barrier
from ._barrier import BrokenBarrierError as BrokenBarrierError
from ._dask import DaskPool as DaskPool
from ._default import configure_default_pool as configure_default_pool
from ._default import default_pool as default_pool
from ._default import run_sync as run_sync
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
from ._executor import PoolExecutor as PoolExecutor
from ._ipc_process import Process as Process
from ._map import MapIterator as MapIterator
from ._map import as_completed as as_completed
from ._observe import PoolStats as PoolStats
from ._observe import TaskEnded as TaskEnded
from ._observe import TaskStarted as TaskStarted
from ._observe import TaskTiming as TaskTiming
from ._observe import WorkerExited as WorkerExited
from ._observe import WorkerStarted as WorkerStarted
from ._pipe import Connection as Connection
from ._pipe import Pipe as Pipe
from ._pool import Pool as Pool
from ._pool import PoolOptions as PoolOptions
from ._queue import Queue as Queue
from ._queue import QueueClosedError as QueueClosedError
from ._shared import Manager as Manager
from ._shared import SharedDict as SharedDict
from ._shared import SharedList as SharedList
from ._sizing import available_cpus as available_cpus
from ._stream import StreamIterator as StreamIterator
from ._sync import BoundedSemaphore as BoundedSemaphore
from ._sync import Condition as Condition
from ._sync import Event as Event
from ._sync import Lock as Lock
from ._sync import Semaphore as Semaphore
from ._task import Task as Task
from ._worker_reports import report_progress as report_progress

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
