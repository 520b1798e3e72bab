"""Test configuration: every async test runs under asyncio, asyncio+uvloop and trio, and every
test is checked for leftover child processes and file descriptors."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import anyio
import psutil
import pytest

import procpool

BACKENDS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
]

# multiprocessing's own long-lived helpers: one per interpreter, started on first use.
_SHARED_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def _own_children() -> list[psutil.Process]:
    """Our live descendants, less multiprocessing's helpers (which are our direct children;
    forkserver workers are the forkserver's children and keep its command line, so they count)."""
    me = os.getpid()
    children = []
    for child in psutil.Process(me).children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            helper = child.ppid() == me and any(name in " ".join(child.cmdline()) for name in _SHARED_HELPERS)
        except psutil.NoSuchProcess:
            continue
        if not helper:
            children.append(child)
    return children


def _open_fds() -> dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return fds


@pytest.fixture(scope="session", autouse=True)
def _warm_up() -> None:
    """Start each event loop kind and a pool once, so the leak check below starts after the
    one-time descriptors (uvloop's signal pipe, the forkserver's pipes) exist."""

    async def use_pool() -> None:
        async with procpool.Pool(1) as pool:
            await pool.run(abs, -1)

    for backend, options in (("asyncio", {}), ("asyncio", {"use_uvloop": True}), ("trio", {})):
        anyio.run(use_pool, backend=backend, backend_options=options)


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    fds_before = _open_fds()
    yield
    deadline = time.monotonic() + 3
    while True:
        children = _own_children()
        new_fds = {fd: target for fd, target in _open_fds().items() if fds_before.get(fd) != target}
        if not children and not new_fds:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    for child in children:
        child.kill()
    assert not children, f"child processes left behind: {[c.pid for c in children]}"
    assert not new_fds, f"file descriptors left open: {new_fds}"


@pytest.fixture(scope="session")
def dask_scheduler_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a Dask LocalCluster (2 worker processes, 1 thread each) shared by the tests.

    It runs detached, outside this process's tree, like a real cluster: the leak check stays strict
    for everything procpool starts. Session-scoped, so it starts before any test's leak snapshot.
    """
    import dask_cluster

    with dask_cluster.running(tmp_path_factory.mktemp("dask") / "cluster.log") as address:
        yield address
