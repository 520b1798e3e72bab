"""examples/fastapi_app.py under a real uvicorn on 127.0.0.1: every endpoint, the 503 overload
answer, a health check that answers while the CPU endpoint is saturated, clean shutdown with no
process left, and ``--reload`` (or importing the app twice) that neither hangs nor leaks."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import anyio
import httpx
import psutil
import pytest
from asgi_lifespan import LifespanManager

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fastapi_app.py"
# uvicorn 0.54 ends a clean SIGTERM shutdown by re-raising the signal on itself.
CLEAN_EXIT = (0, -signal.SIGTERM)


def _load_example(name: str) -> ModuleType:
    """Import examples/fastapi_app.py afresh under ``name``, as a reloading server does."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alive(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


def _wait_until_gone(processes: Iterable[psutil.Process], timeout: float = 5) -> list[psutil.Process]:
    """The processes still alive after ``timeout`` seconds (none, when all is well)."""
    processes = list(processes)
    deadline = time.monotonic() + timeout
    while (alive := _alive(processes)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


class Server:
    """A server process started by a test, its log and its address."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str], cwd: Path) -> None:
        self.log_path = log
        with log.open("w") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.url = ""

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 30) -> re.Match[str]:
        """The ``count``-th match of ``pattern`` in the log, waiting for it to appear."""
        deadline = time.monotonic() + timeout
        while len(matches := list(re.finditer(pattern, self.log))) < count:
            assert self.process.poll() is None, f"the server exited ({self.process.returncode}):\n{self.log}"
            assert time.monotonic() < deadline, f"no {pattern!r} (x{count}) in the server's log:\n{self.log}"
            time.sleep(0.02)
        return matches[count - 1]

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self) -> int:
        """SIGTERM, as a process manager would; returns the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(15)


@contextmanager
def _serve(command: list[str], tmp_path: Path, **env: str) -> Iterator[Server]:
    """Start a server; on the way out, kill whatever the test left running (and fail the test)."""
    server = Server(command, tmp_path / "server.log", {**os.environ, **env}, cwd=tmp_path)
    descendants: list[psutil.Process] = []
    try:
        port = server.wait_for_log(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1)
        server.url = f"http://127.0.0.1:{port}"
        server.wait_for_log("Application startup complete")
        descendants = server.descendants()
        yield server
    finally:
        descendants += server.descendants() if server.process.poll() is None else []
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        for process in _alive(descendants):
            process.kill()


def _digest(data: str, rounds: int) -> str:
    return _load_example("fastapi_app_reference").hash_chain(data, rounds)["digest"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the client's loop; the server is uvicorn's own
@pytest.mark.anyio
async def test_example_under_uvicorn(tmp_path: Path) -> None:
    command = [sys.executable, str(EXAMPLE), "--port", "0"]
    with _serve(command, tmp_path, POOL_WORKERS="1", MAX_QUEUED="2") as server:
        server_processes = [psutil.Process(server.process.pid), *server.descendants()]
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            health = await client.get("/health")
            assert health.json() == {"status": "ok", "workers": 1, "queued": 0}

            digest = (await client.get("/digest", params={"data": "hello", "cost": 3})).json()
            assert digest["digest"] == _digest("hello", 3000)
            assert digest["rounds"] == 3000
            assert digest["pid"] in {p.pid for p in server.descendants()}  # a pool worker did it
            assert (await client.get("/digest", params={"data": "x", "cost": 0})).status_code == 422

            # Saturate the one worker: send slow requests until two wait in the queue (the limit).
            cost = 400  # thousands of rounds: a few tenths of a second each
            slow: list[httpx.Response] = []

            async def slow_request() -> None:
                slow.append(await client.get("/digest", params={"data": "slow", "cost": cost}))

            async with anyio.create_task_group() as group:
                with anyio.fail_after(30):
                    while True:
                        health = (await client.get("/health")).json()
                        if health["queued"] < 2:
                            group.start_soon(slow_request)
                            await anyio.sleep(0.05)  # time for it to reach the pool
                            continue
                        # /health answered while the CPU endpoint was saturated; one more request
                        # is refused at once rather than queued...
                        refused = await client.get("/digest", params={"data": "late", "cost": 1})
                        if refused.status_code != 200:
                            break
                        # ...unless the worker took the next task in between: fill up again.
                assert health == {"status": "ok", "workers": 1, "queued": 2}
                assert refused.status_code == 503, refused.text
                assert refused.headers["Retry-After"] == "1"
            # Those that arrived before the queue was full were served.
            served = [r for r in slow if r.status_code == 200]
            assert len(served) >= 3, [r.status_code for r in slow]
            assert {r.json()["digest"] for r in served} == {_digest("slow", cost * 1000)}
            assert {r.status_code for r in slow} <= {200, 503}

        assert server.stop() in CLEAN_EXIT, server.log
        assert "Application shutdown complete" in server.log
        assert "Traceback" not in server.log, server.log
        assert not _wait_until_gone(server_processes), "left running after shutdown"


def test_reload_restarts_the_app_and_its_pool_without_leaking(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(EXAMPLE, app_dir / "fastapi_app.py")
    command = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(app_dir), "--host", "127.0.0.1"]
    command += ["--port", "0", "--reload", "--reload-dir", str(app_dir)]
    with _serve(command, tmp_path, POOL_WORKERS="1") as server:
        supervisor = psutil.Process(server.process.pid)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            first_worker = client.get("/digest", params={"data": "a"}).json()["pid"]
            first_generation = [p for p in supervisor.children() if "multiprocessing.spawn" in " ".join(p.cmdline())]
            assert len(first_generation) == 1, server.log
            first_generation += first_generation[0].children(recursive=True)
            assert first_worker in {p.pid for p in first_generation}

            with (app_dir / "fastapi_app.py").open("a") as source:
                source.write("\n# edited\n")
            server.wait_for_log("Application startup complete", count=2)

            assert not _wait_until_gone(first_generation), "the old server or its pool outlived the reload"
            assert client.get("/health").json() == {"status": "ok", "workers": 1, "queued": 0}
            second_worker = client.get("/digest", params={"data": "a"}).json()["pid"]
            assert second_worker != first_worker
        processes = [supervisor, *server.descendants()]
        assert server.stop() in CLEAN_EXIT, server.log
        assert server.log.count("Application shutdown complete") == 2
        assert not _wait_until_gone(processes), "left running after shutdown"


@pytest.mark.anyio
async def test_importing_the_app_twice_starts_nothing_and_each_app_gets_its_own_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POOL_WORKERS", "1")
    children = psutil.Process().children(recursive=True)
    first, second = _load_example("fastapi_app_first"), _load_example("fastapi_app_second")
    assert first.app is not second.app
    assert psutil.Process().children(recursive=True) == children  # importing started no process

    async def worker_pid(manager: LifespanManager) -> int:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            answer: int = (await client.get("/digest", params={"data": "a"})).json()["pid"]
            return answer

    with anyio.fail_after(30):
        async with LifespanManager(first.app, startup_timeout=15) as one, LifespanManager(second.app) as two:
            assert await worker_pid(one) != await worker_pid(two)
        async with LifespanManager(first.app, startup_timeout=15) as again:  # started once more
            assert (await worker_pid(again)) > 0
