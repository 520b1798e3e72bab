"""The web integrations (lifespan, dependencies, overload answer, sizing) and `procpool.testing`,
driven through httpx's ASGI transport: no server, no sockets."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import httpx
import psutil
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import procpool
import workfns
from procpool.integrations import web_pool_size
from procpool.integrations.fastapi import STATE_KEY, PoolDep, QueueLimit, get_pool, pool_lifespan
from procpool.integrations.starlette import QueueLimit as StarletteQueueLimit
from procpool.integrations.starlette import pool_from
from procpool.testing import InlinePool, override_pool

LimitedPool = Annotated[procpool.Pool, Depends(QueueLimit(max_queued=1, retry_after=7))]


def _fastapi_app(**lifespan_options: Any) -> FastAPI:
    """An app with a pool-backed endpoint, one behind a queue limit, and one that does not use the pool."""
    app = FastAPI(lifespan=pool_lifespan(**lifespan_options))

    @app.get("/square")
    async def square(pool: PoolDep, x: int) -> dict[str, Any]:
        return {"square": await pool.run(workfns.square, x), "pool_size": pool.workers}

    @app.get("/limited")
    async def limited(pool: LimitedPool) -> dict[str, int]:
        thread, pid = await pool.run(workfns.thread_and_pid)
        return {"thread": thread, "pid": pid}

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        return {"greeting": getattr(request.state, "greeting", None)}

    return app


@asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Mapping[str, Any]]]:
    """Run the app's lifespan and yield a client for it, and the lifespan state."""
    states: list[Mapping[str, Any]] = []

    async def capture_state(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            states.append(scope["state"])  # the server's state dict, which the lifespan fills
        await app(scope, receive, send)

    with anyio.fail_after(20):
        async with LifespanManager(capture_state, startup_timeout=15) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                yield client, states[0]


async def _fill_queue(pool: procpool.Pool, count: int) -> list[procpool.Task[Any]]:
    """Submit long tasks until ``count`` wait in the queue; returns them, to cancel later.

    A worker may be sent a task or more ahead of the one it runs, and those do not count as
    queued, so this does not guess how many to submit: it submits until the queue is long enough.
    """
    tasks: list[procpool.Task[Any]] = []
    with anyio.fail_after(10):
        while pool.queued < count:
            tasks.append(pool.submit(workfns.sleep_and_return, 30))
            await anyio.sleep(0.02)  # time for the worker's slot to take what it takes
    return tasks


# -- the lifespan ---------------------------------------------------------------------------------


def test_importing_procpool_and_the_integrations_package_imports_no_web_framework() -> None:
    code = (
        "import sys, procpool, procpool.integrations, procpool.testing\n"
        "loaded = sorted(m for m in ('fastapi', 'starlette', 'httpx', 'uvicorn') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.anyio
async def test_lifespan_starts_one_pool_for_the_app_and_stops_it_on_shutdown() -> None:
    app = _fastapi_app(workers=1)
    async with _serving(app) as (client, state):
        pool = state[STATE_KEY]
        assert isinstance(pool, procpool.Pool)
        worker_pid = await pool.run(workfns.getpid)
        assert worker_pid != os.getpid()
        assert psutil.pid_exists(worker_pid)
        responses = [await client.get("/square", params={"x": x}) for x in range(3)]
        assert [r.json() for r in responses] == [{"square": x * x, "pool_size": 1} for x in range(3)]
    with pytest.raises(procpool.PoolClosedError):
        pool.submit(workfns.square, 2)
    assert not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.anyio
async def test_the_apps_own_lifespan_runs_inside_and_its_state_is_merged() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append("own startup")
        yield {"greeting": "hello"}
        events.append("own shutdown")

    app = _fastapi_app(workers=1, lifespan=own_lifespan)
    async with _serving(app) as (client, state):
        assert state[STATE_KEY].workers == 1
        assert (await client.get("/state")).json() == {"greeting": "hello"}
        assert (await client.get("/square", params={"x": 4})).json()["square"] == 16
        assert events == ["own startup"]
    assert events == ["own startup", "own shutdown"]


@pytest.mark.anyio
async def test_the_same_app_can_start_again_after_shutdown() -> None:
    """As under ``--reload`` or in a test suite: each startup gets a new pool."""
    app = _fastapi_app(workers=1)
    pools = []
    for _ in range(2):
        async with _serving(app) as (client, state):
            pools.append(state[STATE_KEY])
            assert (await client.get("/square", params={"x": 3})).json()["square"] == 9
    assert pools[0] is not pools[1]


@pytest.mark.anyio
async def test_pool_size_is_the_cpus_shared_among_the_web_processes() -> None:
    cpus = procpool.available_cpus()
    app = _fastapi_app(web_processes=cpus)  # one pool worker per web process
    async with _serving(app) as (client, _):
        assert (await client.get("/square", params={"x": 2})).json() == {"square": 4, "pool_size": 1}


@pytest.mark.anyio
async def test_more_web_processes_than_cpus_get_one_pool_worker_each_and_a_warning_that_names_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpus = procpool.available_cpus()
    monkeypatch.setenv("WEB_CONCURRENCY", str(2 * cpus))
    with pytest.warns(RuntimeWarning) as warned:
        async with _serving(_fastapi_app()) as (client, _):
            assert (await client.get("/square", params={"x": 2})).json() == {"square": 4, "pool_size": 1}
    [message] = [str(warning.message) for warning in warned]
    assert f"{2 * cpus} web processes ($WEB_CONCURRENCY={2 * cpus}) x 1 pool worker" in message
    assert f"run at most {cpus} web process" in message
    assert "workers=" not in message  # the pools are already as small as they go


@pytest.mark.anyio
async def test_an_app_without_the_pool_lifespan_gets_an_error_that_says_what_to_do() -> None:
    app = FastAPI()

    @app.get("/")
    async def endpoint(pool: PoolDep) -> int:
        return await pool.run(workfns.square, 2)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        with pytest.raises(RuntimeError, match=r"lifespan=pool_lifespan\(...\)"):
            await client.get("/")


def test_lifespan_arguments_are_checked_when_the_app_is_defined() -> None:
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        pool_lifespan(0)
    with pytest.raises(ValueError, match="web_processes must be a positive integer"):
        pool_lifespan(web_processes=-2)
    with pytest.raises(TypeError, match="lifespan must be the app's lifespan function"):
        pool_lifespan(lifespan="startup")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tasks_per_worker must be a positive integer"):
        pool_lifespan(max_tasks_per_worker=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_memory'"):
        pool_lifespan(max_memory=10)  # type: ignore[call-arg]


# -- overload protection --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_queue_limit_answers_503_with_retry_after_while_too_many_tasks_wait() -> None:
    async with _serving(_fastapi_app(workers=1)) as (client, state):
        pool = state[STATE_KEY]
        blocking = await _fill_queue(pool, 1)  # the limit (1) is reached
        refused = await client.get("/limited")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "7"
        assert "1 tasks are waiting for a worker" in refused.json()["detail"]
        assert pool.queued == 1  # the refused request queued nothing

        for task in blocking:
            task.cancel()  # the running one's worker is killed and replaced
        accepted = await client.get("/limited")
        assert accepted.status_code == 200
        assert accepted.json()["pid"] != os.getpid()


@pytest.mark.anyio
async def test_starlette_app_without_fastapi() -> None:
    limit = StarletteQueueLimit(max_queued=1, retry_after=3)

    async def square(request: Request) -> JSONResponse:
        pool = pool_from(request)
        limit.check(pool)
        return JSONResponse(await pool.run(workfns.square, int(request.query_params["x"])))

    app = Starlette(routes=[Route("/square", square)], lifespan=pool_lifespan(1))
    async with _serving(app) as (client, state):
        assert (await client.get("/square", params={"x": 9})).json() == 81
        blocking = await _fill_queue(state[STATE_KEY], 1)
        refused = await client.get("/square", params={"x": 9})
        assert (refused.status_code, refused.headers["Retry-After"]) == (503, "3")
        for task in blocking:
            task.cancel()


def test_queue_limit_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_queued must be a positive integer"):
        QueueLimit(0)
    with pytest.raises(ValueError, match="retry_after must be a whole number of seconds"):
        QueueLimit(4, retry_after=-1)
    with pytest.raises(ValueError, match="retry_after must be a whole number of seconds"):
        StarletteQueueLimit(4, retry_after=1.5)  # type: ignore[arg-type]
    assert repr(QueueLimit(4, retry_after=2)) == "QueueLimit(max_queued=4, retry_after=2)"


# -- sizing for several web processes -------------------------------------------------------------


def test_web_pool_size_shares_the_cpus_among_web_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus = procpool.available_cpus()
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert web_pool_size() == cpus
    assert web_pool_size(web_processes=cpus) == 1
    assert web_pool_size(1, web_processes=cpus) == 1
    monkeypatch.setenv("WEB_CONCURRENCY", str(cpus))
    assert web_pool_size() == 1
    assert web_pool_size(web_processes=1) == cpus  # an explicit count wins over the environment


def test_web_pool_size_warns_when_the_web_processes_start_more_workers_than_cpus_and_names_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpus = procpool.available_cpus()
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    # Too many workers per web process: the fix is fewer of them.
    with pytest.warns(RuntimeWarning) as warned:
        assert web_pool_size(2, web_processes=cpus) == 2
    [message] = [str(warning.message) for warning in warned]
    assert f"(web_processes={cpus}) x 2 pool workers = {2 * cpus} worker processes for {cpus} CPU" in message
    assert "use workers=1 per web process" in message
    assert "web processes to" not in message
    # Too many web processes, even at one worker each: the fix is fewer web processes (and one worker each).
    monkeypatch.setenv("WEB_CONCURRENCY", str(2 * cpus))
    for workers, fix in ((None, "workers="), (1, "workers="), (2, "with workers=1 per web process")):
        with pytest.warns(RuntimeWarning) as warned:
            assert web_pool_size(workers) == (workers or 1)  # one each is the least, even if too many in all
        [message] = [str(warning.message) for warning in warned]
        assert f"($WEB_CONCURRENCY={2 * cpus})" in message
        assert f"run at most {cpus} web process" in message
        assert (fix in message) == (workers == 2), message


@pytest.mark.parametrize("value", ["zero", "0", "-3", ""])
def test_web_pool_size_rejects_a_bad_web_concurrency(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", value)
    with pytest.raises(ValueError, match=r"\$WEB_CONCURRENCY must be a positive integer"):
        web_pool_size()


def test_web_pool_size_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        web_pool_size(0)
    with pytest.raises(ValueError, match="web_processes must be a positive integer"):
        web_pool_size(web_processes=True)


# -- procpool.testing -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_override_pool_runs_the_endpoints_tasks_in_this_process() -> None:
    """No lifespan runs and no worker starts: the inline pool serves every pool dependency."""
    app = _fastapi_app(workers=1)
    children = psutil.Process().children(recursive=True)
    async with InlinePool() as pool:
        with override_pool(app, pool) as overriding:
            assert overriding is pool
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                assert (await client.get("/square", params={"x": 6})).json() == {"square": 36, "pool_size": 1}
                answer = (await client.get("/limited")).json()
                assert answer["pid"] == os.getpid()
                assert answer["thread"] != threading.get_ident()  # the event loop stayed free
                assert psutil.Process().children(recursive=True) == children
        assert app.dependency_overrides == {}


@pytest.mark.anyio
async def test_override_pool_with_a_one_worker_pool_restores_the_previous_override() -> None:
    app = _fastapi_app(workers=1)

    async def earlier() -> procpool.Pool:
        raise AssertionError("not used while overridden")

    app.dependency_overrides[get_pool] = earlier
    async with procpool.Pool(1) as pool:
        with override_pool(app, pool):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                assert (await client.get("/limited")).json()["pid"] == await pool.run(workfns.getpid)
    assert app.dependency_overrides == {get_pool: earlier}


@pytest.mark.anyio
async def test_inline_pool_has_the_pool_surface() -> None:
    pool = InlinePool()
    with pytest.raises(procpool.PoolClosedError, match="not started"):
        pool.submit(workfns.square, 1)
    async with pool:
        assert pool.workers == 1
        assert await pool.run(workfns.add, 2, 3, scale=10) == 50
        assert await pool.run(lambda x: x + 1, 1) == 2
        assert await pool.run(workfns.async_square, 7) == 49  # on an asyncio loop in its thread, even under trio
        assert [y async for y in pool.map(workfns.square, range(5), chunksize=2)] == [0, 1, 4, 9, 16]
        assert [y async for y in pool.starmap(workfns.mul, [(2, 3), (4, 5)])] == [6, 20]
        assert await pool.stream(workfns.identity, [1, 2]) == [1, 2]
        assert await pool.options(kill_on_cancel=False).run(workfns.square, 3) == 9
        task = pool.submit(workfns.square, 4)
        assert pool.queued == 1
        assert await task == 16
        assert (pool.queued, task.done(), task.result()) == (0, True, 16)
        assert repr(pool) == "<procpool.testing.InlinePool open>"
    assert repr(pool) == "<procpool.testing.InlinePool closed>"
    with pytest.raises(procpool.PoolClosedError):
        await pool.run(workfns.square, 1)


@pytest.mark.anyio
async def test_inline_pool_raises_what_a_real_pool_would() -> None:
    async with InlinePool() as pool:
        with pytest.raises(ValueError, match="boom") as info:
            await pool.run(workfns.raise_value_error, "boom")
        assert info.traceback[-1].name == "raise_value_error"  # the traceback is this process's own
        with pytest.raises(procpool.SerializationError, match="an argument of"):
            pool.submit(workfns.identity, threading.Lock())
        with pytest.raises(procpool.SerializationError, match="the result of"):
            await pool.run(workfns.return_lock)
        with pytest.raises(procpool.RemoteError, match="KeyboardInterrupt"):
            await pool.run(workfns.raise_keyboard_interrupt)
        with pytest.raises(TypeError, match="fn must be a callable"):
            pool.submit(42)  # type: ignore[call-overload]
        assert await pool.run(workfns.square, 5) == 25  # still serving


@pytest.mark.anyio
async def test_inline_pool_cancellation() -> None:
    async with InlinePool() as pool:
        running = pool.submit(workfns.sleep_and_return, 0.3, "ran")
        queued = pool.submit(workfns.square, 2)
        assert queued.cancel()
        with anyio.move_on_after(0.05) as scope:
            await running  # cancelled at once, although its thread goes on
        assert scope.cancelled_caught
        assert running.cancelled()
        assert queued.cancelled()
        with pytest.raises(procpool.TaskCancelledError):
            queued.result()
        assert await pool.run(workfns.square, 3) == 9  # after the abandoned call ended


@pytest.mark.anyio
async def test_inline_pool_options_timeout_as_a_real_pool() -> None:
    """Code written against ``pool.options(timeout=...)`` and ``pool.stats()`` runs on the inline
    pool too: a timeout ends the call for its caller with TimeoutError, queued or running."""
    async with InlinePool() as pool:
        quick = pool.options(timeout=5, retries=2)
        assert await quick.run(workfns.square, 6) == 36
        slow = pool.options(timeout=0.1)
        running = slow.submit(workfns.sleep_and_return, 0.4, "late")
        queued = slow.submit(workfns.square, 3)  # its deadline passes behind the running call
        with anyio.fail_after(5):
            with pytest.raises(TimeoutError, match=r"0\.1 s timeout"):
                await running
            with pytest.raises(TimeoutError):
                await queued
        assert queued.timing.started is None  # it never started
        with pytest.raises(ValueError, match="timeout"):
            pool.options(timeout=-1)
        assert await pool.run(workfns.square, 2) == 4  # after the abandoned call ended


@pytest.mark.anyio
async def test_inline_pool_stats_and_timing() -> None:
    pool = InlinePool()
    assert pool.stats().alive == 0
    async with pool:
        assert await pool.run(workfns.sleep_and_return, 0.05, "a") == "a"
        with pytest.raises(ValueError):
            await pool.run(workfns.raise_value_error, "x")
        cancelled = pool.submit(workfns.square, 1)
        cancelled.cancel()
        task = pool.submit(workfns.square, 3)
        await task
        stats = pool.stats()
        assert (stats.workers, stats.alive, stats.busy, stats.queued) == (1, 1, 0, 0)
        assert (stats.completed, stats.failed, stats.cancelled) == (2, 1, 1)
        assert stats.run_time_p99 is not None
        assert stats.run_time_p99 >= 0.05
        timing = task.timing
        steps = [timing.submitted, timing.sent, timing.started, timing.finished, timing.received]
        assert None not in steps
        assert steps == sorted(steps)  # type: ignore[type-var]  # None is ruled out above
        busy = pool.submit(workfns.sleep_and_return, 0.3)
        with anyio.fail_after(5):
            while not pool.stats().busy:
                await anyio.sleep(0.01)
        await busy
    assert pool.stats().alive == 0


@pytest.mark.anyio
async def test_inline_pool_leaving_by_an_exception_cancels_what_is_left() -> None:
    with pytest.raises(LookupError):
        async with InlinePool() as pool:
            running = pool.submit(workfns.async_sleep_and_return, 0.2)
            queued = pool.submit(workfns.square, 2)
            await anyio.sleep(0.05)
            raise LookupError
    assert running.cancelled()
    assert queued.cancelled()


@pytest.mark.anyio
async def test_inline_pool_initializer_runs_in_this_process() -> None:
    async with InlinePool(initializer=workfns.set_state, initargs=("inline", 1)) as pool:
        assert await pool.run(workfns.get_state, "inline") == 1
    with pytest.raises(procpool.InitializerError, match="initializer raised") as info:
        async with InlinePool(initializer=workfns.fail_initializer):
            pass
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(TypeError, match="initializer must be callable"):
        InlinePool(initializer=3)  # type: ignore[arg-type]
