"""A FastAPI app with a CPU-bound endpoint that does not stall the server.

``GET /digest?data=...&cost=N`` runs N thousand rounds of SHA-256 (about 1 ms per thousand, all
of it holding the GIL) in a procpool worker, while the event loop goes on serving everyone else:
``GET /health`` answers at once even when every worker is busy. When ``MAX_QUEUED`` requests
already wait for a worker, ``/digest`` answers 503 with ``Retry-After`` instead of queueing more.

Run it with ``python examples/fastapi_app.py [--port 8000] [--web-processes 2]``, or with uvicorn
itself: ``uvicorn fastapi_app:app --app-dir examples``. Settings come from the environment:
``POOL_WORKERS`` (pool workers per web process; default: the CPUs shared among the web processes)
and ``MAX_QUEUED`` (default 16). Then try ``curl 'http://127.0.0.1:8000/digest?data=hi&cost=200'``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query

from procpool.integrations.fastapi import PoolDep, QueueLimit, pool_lifespan

MAX_COST = 20_000


def hash_chain(data: str, rounds: int) -> dict[str, Any]:
    """The CPU-bound work: SHA-256 applied ``rounds`` times to ``data``.

    Hashing 32 bytes is too short for hashlib to release the GIL, so this holds it throughout,
    as pure-Python work would. Returns the digest and the pid of the process that computed it.
    """
    digest = data.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return {"digest": digest.hex(), "rounds": rounds, "pid": os.getpid()}


def create_app(*, workers: int | None = None, max_queued: int = 16) -> FastAPI:
    """The app. Creating it starts no worker: the pool starts with the app's lifespan.

    Args:
        workers: pool workers in this web process (None: the CPUs shared among the web processes).
        max_queued: answer 503 when this many ``/digest`` requests already wait for a worker.
    """
    app = FastAPI(title="procpool example", lifespan=pool_lifespan(workers))
    # Checked before the endpoint runs: a 503 with Retry-After when max_queued tasks already wait.
    overload_guard = Depends(QueueLimit(max_queued=max_queued, retry_after=1))

    @app.get("/digest", dependencies=[overload_guard])
    async def digest(
        pool: PoolDep,
        data: str,
        cost: Annotated[int, Query(ge=1, le=MAX_COST, description="thousands of hash rounds")] = 10,
    ) -> dict[str, Any]:
        return await pool.run(hash_chain, data, cost * 1000)

    @app.get("/health")
    async def health(pool: PoolDep) -> dict[str, Any]:
        return {"status": "ok", "workers": pool.workers, "queued": pool.queued}

    return app


def _settings_from_environment() -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if "POOL_WORKERS" in os.environ:
        settings["workers"] = int(os.environ["POOL_WORKERS"])
    if "MAX_QUEUED" in os.environ:
        settings["max_queued"] = int(os.environ["MAX_QUEUED"])
    return settings


app = create_app(**_settings_from_environment())


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the app with uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--web-processes", type=int, default=1, help="uvicorn worker processes (each has a pool)")
    args = parser.parse_args(argv)
    # uvicorn's --workers does not tell the app how many copies of it run; $WEB_CONCURRENCY does,
    # and pool_lifespan shares the CPUs among them by it.
    os.environ["WEB_CONCURRENCY"] = str(args.web_processes)
    uvicorn.run("fastapi_app:app", host=args.host, port=args.port, workers=args.web_processes)


if __name__ == "__main__":  # required: worker processes re-import this module
    main()
