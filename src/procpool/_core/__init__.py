"""The core every backend shares: a call's record (`Job`) and handle (`Task`), the `Backend`
boundary, and the queueing helpers (backlog, deadlines, admission) and observation they use."""

from ._admission import Admission as Admission
from ._backend import Backend as Backend
from ._backend import Outstanding as Outstanding
from ._backend import PoolState as PoolState
from ._backend import in_trio as in_trio
from ._backend import leave_task_group as leave_task_group
from ._backend import loop_check as loop_check
from ._backend import used_from_another_thread as used_from_another_thread
from ._backlog import Backlog as Backlog
from ._backlog import BacklogClosed as BacklogClosed
from ._cancel_check import CancelCheck as CancelCheck
from ._cancel_check import cancel_check as cancel_check
from ._deadlines import Deadlines as Deadlines
from ._job import Job as Job
from ._job import Stage as Stage
from ._observe import EventHook as EventHook
from ._observe import ExitReason as ExitReason
from ._observe import PoolObserver as PoolObserver
from ._observe import PoolStats as PoolStats
from ._observe import TaskEnded as TaskEnded
from ._observe import TaskStarted as TaskStarted
from ._observe import TaskTiming as TaskTiming
from ._observe import WorkerExited as WorkerExited
from ._observe import WorkerStarted as WorkerStarted
from ._stream import WINDOW as WINDOW
from ._stream import StreamLink as StreamLink
from ._task import Task as Task
from ._task import awaited_result as awaited_result
from ._task import wait_done as wait_done

__all__ = (
    "WINDOW",
    "Admission",
    "Backend",
    "Backlog",
    "BacklogClosed",
    "CancelCheck",
    "Deadlines",
    "EventHook",
    "ExitReason",
    "Job",
    "Outstanding",
    "PoolObserver",
    "PoolState",
    "PoolStats",
    "Stage",
    "StreamLink",
    "Task",
    "TaskEnded",
    "TaskStarted",
    "TaskTiming",
    "WorkerExited",
    "WorkerStarted",
    "awaited_result",
    "cancel_check",
    "in_trio",
    "leave_task_group",
    "loop_check",
    "used_from_another_thread",
    "wait_done",
)
