"""The procpool side of a task on a Dask worker: run one pickled call and answer with bytes.

`DaskPool` submits `run_call` to Dask with two opaque byte strings, so the user's arguments never
meet Dask's own ``submit`` keywords and no Dask serializer sees the user's objects. `run_call`
always returns, never raises: an exception travels packed by `pack_exception`, as it does
from a procpool worker, so the parent rebuilds it the same way whichever backend ran the call,
and Dask's own error handling (retries, tracebacks through tblib) never touches it.

Import-light (stdlib, cloudpickle, `procpool._child`): Dask workers import it to run a task.
"""

from __future__ import annotations

from .._child import run_pickled

OK = "ok"
ERROR = "error"


def run_call(fn_bytes: bytes, args_bytes: bytes) -> tuple[str, bytes]:
    """Run a pickled call on a Dask worker; an ``async def`` function runs on a loop of its own.

    Args:
        fn_bytes: the function, pickled with cloudpickle.
        args_bytes: ``(args, kwargs)``, pickled with cloudpickle.

    Returns:
        ``(OK, pickled result)`` or ``(ERROR, exception packed by pack_exception)``; SystemExit and
        KeyboardInterrupt too: a task must not end a Dask worker that other work shares.
    """
    succeeded, outcome = run_pickled(fn_bytes, args_bytes)
    return (OK if succeeded else ERROR), outcome
