"""examples/notebook.ipynb runs in a real Jupyter kernel (ipykernel, driven by nbclient), cell by
cell: a pool opened in one cell and used in the next ones, a cell interrupted while it awaits a
long task, the pool still usable after it, and closed in the last cell. A kernel restarted or shut
down with its pool still open leaves no process behind.

The kernel runs this Python and imports this procpool (``PYTHONPATH``), and is shut down by each
test, so the suite's check for leftover processes and descriptors holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import nbformat
import psutil
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat import NotebookNode

import procpool
from script_env import script_env

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"
SOURCE = Path(procpool.__file__).resolve().parent.parent  # the kernel imports procpool from here
KERNEL = "procpool-test"
GONE_WITHIN = 10  # seconds for a kernel's processes to end: generous, on a loaded 2-core machine


def _text(cell: NotebookNode) -> str:
    """What a code cell showed: printed text (stderr aside: warnings), its value, or its error's name."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream" and output.name == "stdout":
            parts.append(output.text)
        elif output.output_type == "execute_result":
            parts.append(output.data["text/plain"])
        elif output.output_type == "error":
            parts.append(f"error: {output.ename}")
    return "".join(parts)


async def _until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


class Kernel:
    """An ipykernel running a notebook's cells, chosen by their ids."""

    def __init__(self, notebook: NotebookNode, client: NotebookClient, manager: AsyncKernelManager) -> None:
        self.notebook = notebook
        self.client = client
        self.manager = manager
        self._cells = {cell.id: (index, cell) for index, cell in enumerate(notebook.cells)}

    def cell(self, cell_id: str) -> NotebookNode:
        return self._cells[cell_id][1]

    async def run(self, *cell_ids: str) -> None:
        for cell_id in cell_ids:
            index, cell = self._cells[cell_id]
            await self.client.async_execute_cell(cell, index)

    def processes(self) -> list[psutil.Process]:
        """The kernel's process and all its descendants: multiprocessing's forkserver and resource
        tracker, and the pool's workers."""
        kernel = psutil.Process(self.manager.provisioner.pid)  # type: ignore[union-attr]
        return [kernel, *kernel.children(recursive=True)]

    def workers(self) -> list[int]:
        """The pids of the pool's workers: the children of the kernel's forkserver."""
        kernel = psutil.Process(self.manager.provisioner.pid)  # type: ignore[union-attr]
        pids = []
        for child in kernel.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "multiprocessing.forkserver" in " ".join(child.cmdline()):
                    pids += [worker.pid for worker in child.children()]
        return pids


@asynccontextmanager
async def _kernel(tmp_path: Path) -> AsyncIterator[Kernel]:
    """A kernel for the example notebook; shut down at the end, whatever happened."""
    kernels = tmp_path / "kernels"
    (kernels / KERNEL).mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"}
    (kernels / KERNEL / "kernel.json").write_text(json.dumps({**spec, "display_name": KERNEL}))
    manager = AsyncKernelManager(
        kernel_name=KERNEL,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]),
        connection_file=str(tmp_path / "connection.json"),
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, km=manager, timeout=60, resources={"metadata": {"path": str(tmp_path)}})
    env = script_env()
    env["PYTHONPATH"] = os.pathsep.join([str(SOURCE), env["PYTHONPATH"]])
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    try:
        async with client.async_setup_kernel(env=env):
            yield Kernel(notebook, client, manager)
    finally:
        if manager.has_kernel:
            await manager.shutdown_kernel(now=True)
        if client.kc is not None:
            client.kc.stop_channels()
        manager.context.destroy()


def _all_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=GONE_WITHIN)
    assert not alive, [(process.pid, process.cmdline()) for process in alive]


@pytest.mark.timeout(60)
def test_notebook_runs_cell_by_cell_with_an_interrupted_cell(tmp_path: Path) -> None:
    asyncio.run(_run_the_notebook(tmp_path))


async def _run_the_notebook(tmp_path: Path) -> None:
    async with _kernel(tmp_path) as kernel:
        await kernel.run("imports", "define", "open", "run", "gather", "map")
        assert _text(kernel.cell("open")).endswith(" open>")
        assert _text(kernel.cell("run")) == "90"
        assert _text(kernel.cell("gather")) == "[0, 10, 40, 90, 160]"
        # A function defined in a cell travels by value, with its globals' values at the call.
        assert _text(kernel.cell("map")) == "[0, 100, 400, 900, 1600]"

        interrupted = kernel.cell("interrupted")
        running = asyncio.ensure_future(kernel.run("interrupted"))
        await _until(lambda: "slow task started" in _text(interrupted), "the slow task runs")
        slow_worker = int(re.findall(r"worker (\d+)", _text(interrupted))[0])
        interrupted_at = time.monotonic()
        await kernel.manager.interrupt_kernel()
        await running
        assert time.monotonic() - interrupted_at < 20  # long before the task's 60 s
        assert _text(interrupted).endswith("error: CancelledError")
        # The task's worker was killed; the pool replaced it (and keeps a spare from now on).
        await _until(lambda: slow_worker not in kernel.workers(), "the interrupted task's worker is gone")

        await kernel.run("after-interrupt")
        assert re.fullmatch(r"\(1600, <procpool.Pool workers=2 .* open>\)", _text(kernel.cell("after-interrupt")))
        await kernel.run("close")
        assert _text(kernel.cell("close")).endswith(" closed>")
        await _until(lambda: not kernel.workers(), "the workers are stopped")


@pytest.mark.timeout(60)
def test_kernel_restarted_or_shut_down_with_a_pool_open_leaves_no_process(tmp_path: Path) -> None:
    asyncio.run(_restart_then_shut_down(tmp_path))


async def _restart_then_shut_down(tmp_path: Path) -> None:
    async with _kernel(tmp_path) as kernel:
        await kernel.run("imports", "define", "open", "run")
        assert len(kernel.workers()) == 2
        processes = kernel.processes()
        # A restart kills the kernel's process group (the kernel, the forkserver): the workers,
        # each in a group of its own, end with their lifeline to the kernel.
        await kernel.manager.restart_kernel(now=True)
        _all_gone(processes)

        await kernel.client.kc.wait_for_ready(timeout=30)  # type: ignore[union-attr]
        await kernel.run("imports", "define", "open", "run")
        assert _text(kernel.cell("run")).endswith("90")
        processes = kernel.processes()
        assert len(kernel.workers()) == 2
        await kernel.manager.shutdown_kernel()  # asked to shut down, with its pool open
        _all_gone(processes)
