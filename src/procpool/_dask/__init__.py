"""`DaskPool`: the same verbs on a Dask distributed cluster, and the trampoline its workers run."""

from ._pool import DaskPool as DaskPool
from ._worker import run_call as run_call

__all__ = (
    "DaskPool",
    "run_call",
)
