"""The procpool side of a task on a Dask worker: run one pickled call and answer with bytes.

`DaskPool` submits `run_call` to Dask with two opaque byte strings, so the user's arguments never
meet Dask's own ``submit`` keywords and no Dask serializer sees the user's objects. `run_call`
always returns, never raises: an exception travels packed by `_wire.pack_exception`, as it does
from a procpool worker, so the parent rebuilds it the same way whichever backend ran the call,
and Dask's own error handling (retries, tracebacks through tblib) never touches it.

Import-light (stdlib, cloudpickle, `_wire`, `_worker`): Dask workers import it to run a task.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle

from . import _wire
from ._worker import _as_coroutine, _name, _new_event_loop

OK = "ok"
ERROR = "error"


def run_call(fn_bytes: bytes, args_bytes: bytes) -> tuple[str, bytes]:
    """Run a pickled call on a Dask worker; an ``async def`` function runs on a loop of its own.

    Args:
        fn_bytes: the function, pickled with cloudpickle.
        args_bytes: ``(args, kwargs)``, pickled with cloudpickle.

    Returns:
        ``(OK, pickled result)`` or ``(ERROR, exception packed by _wire.pack_exception)``.
    """
    try:
        fn = pickle.loads(fn_bytes)
        args, kwargs = pickle.loads(args_bytes)
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            # Dask runs tasks in threads of its own with no event loop: each call gets a fresh one.
            with asyncio.Runner(loop_factory=_new_event_loop) as runner:
                result = runner.run(_as_coroutine(result))
        return OK, _wire.dumps_for_transport(result, f"the result of {_name(fn)}")
    except BaseException as exc:
        # SystemExit and KeyboardInterrupt too: a task must not end a Dask worker that other work shares.
        return ERROR, _wire.pack_exception(exc)
