"""IPC objects for work that is not request/response: queues, pipes, locks and friends,
shared dicts and lists, and processes of one's own. They travel to tasks and processes as arguments."""

from ._barrier import Barrier as Barrier
from ._barrier import BrokenBarrierError as BrokenBarrierError
from ._pipe import Connection as Connection
from ._pipe import Pipe as Pipe
from ._process import Process as Process
from ._queue import Queue as Queue
from ._queue import QueueClosedError as QueueClosedError
from ._shared import Manager as Manager
from ._shared import SharedDict as SharedDict
from ._shared import SharedList as SharedList
from ._sync import BoundedSemaphore as BoundedSemaphore
from ._sync import Condition as Condition
from ._sync import Event as Event
from ._sync import Lock as Lock
from ._sync import LockHolderDiedError as LockHolderDiedError
from ._sync import Semaphore as Semaphore

__all__ = (
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Connection",
    "Event",
    "Lock",
    "LockHolderDiedError",
    "Manager",
    "Pipe",
    "Process",
    "Queue",
    "QueueClosedError",
    "Semaphore",
    "SharedDict",
    "SharedList",
)
