"""The child side: what runs in a worker process (its main loop, one call, its reports).

Import-light: stdlib, cloudpickle and `procpool._transport`, never anyio or the parent's modules.
"""

from ._call import END as END
from ._call import ChunkRunner as ChunkRunner
from ._call import call as call
from ._call import complete as complete
from ._call import describe as describe
from ._call import item_source as item_source
from ._call import new_event_loop as new_event_loop
from ._call import run_pickled as run_pickled
from ._reports import STDOUT as STDOUT
from ._reports import report_progress as report_progress
from ._worker import TAKE_BACK_SIGNAL as TAKE_BACK_SIGNAL
from ._worker import InheritedFd as InheritedFd
from ._worker import arm_lifeline as arm_lifeline
from ._worker import kill_at_end_of_file as kill_at_end_of_file
from ._worker import main as worker_main

__all__ = (
    "END",
    "STDOUT",
    "TAKE_BACK_SIGNAL",
    "ChunkRunner",
    "InheritedFd",
    "arm_lifeline",
    "call",
    "complete",
    "describe",
    "item_source",
    "kill_at_end_of_file",
    "new_event_loop",
    "report_progress",
    "run_pickled",
    "worker_main",
)
