"""The trust boundary: the parent and its own workers, nothing else (docs/reliability.md).

A shared IPC object reaches a running process through its owner's share point, an abstract unix
socket whose name anyone can read in /proc/net/unix. Once the owner stops sharing (it closed its
copy right after submitting a task that uses it), the name is free, and any local process can bind
it. A process attaching must then refuse whoever serves it unless it is the owner: the same user
and the owner's pid.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import procpool
import workfns
from ipc_support import no_thread_left  # noqa: F401 (autouse fixture)
from script_env import script_env

pytestmark = pytest.mark.anyio

IMPOSTOR = Path(__file__).resolve().parent / "scripts" / "share_impostor.py"
NOBODY = 65534


def _share_names() -> set[str]:
    """The names this process's share point listens on, as anyone can read them."""
    prefix = f"@procpool-{os.getpid()}-"
    lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    return {fields[-1] for fields in (line.split() for line in lines) if fields[-1].startswith(prefix)}


async def _until(condition: object, what: str) -> None:
    with anyio.fail_after(10):
        while not condition():  # type: ignore[operator]
            await anyio.sleep(0.01)


async def _attach_through_an_impostor(tmp_path: Path, user: int | None) -> tuple[BaseException | str, str]:
    """A task that receives a Pipe end whose owner closed it before the worker attached, while an
    impostor (of ``user``, or ours) serves the freed name; what the task gave and what the
    impostor saw."""
    async with procpool.Pool(1) as pool:
        blocker = pool.submit(workfns.wait_for_release, str(tmp_path), 30)
        await _until((tmp_path / "pid").exists, "the only worker is busy")
        end, other = procpool.Pipe()
        task = pool.submit(workfns.received, end)  # pickled now: shared under a name
        (name,) = _share_names()
        end.close()  # the owner stops sharing: the name is free
        other.close()
        await _until(lambda: not _share_names(), "the share point has stopped")
        start = functools.partial(
            subprocess.Popen,
            [sys.executable, str(IMPOSTOR), name, *([] if user is None else [str(user)])],
            stdout=subprocess.PIPE,
            text=True,
            env=script_env(),
        )
        impostor = await anyio.to_thread.run_sync(start)
        try:
            assert impostor.stdout is not None
            assert await anyio.to_thread.run_sync(impostor.stdout.readline) == "listening\n"
            (tmp_path / "release").touch()
            await blocker
            try:
                outcome: BaseException | str = await task
            except Exception as exc:
                outcome = exc
            seen, _ = await anyio.to_thread.run_sync(impostor.communicate, None, 20)
        finally:
            if impostor.poll() is None:
                impostor.kill()
                impostor.wait()
    return outcome, seen


def _assert_refused(outcome: BaseException | str, seen: str, server: str) -> None:
    assert seen == "refused\n", "the impostor was given the key"
    assert isinstance(outcome, BaseException), f"the task ran with the impostor's descriptors: {outcome!r}"
    text = f"{outcome} {outcome.__cause__}"
    assert "refused to attach to a procpool object" in text, text
    assert "the process serving it is process" in text, text
    assert f"of user {server}," in text, text


@pytest.mark.timeout(60)
async def test_attach_refuses_a_server_of_the_same_user_that_is_not_the_owner(tmp_path: Path) -> None:
    outcome, seen = await _attach_through_an_impostor(tmp_path, None)
    _assert_refused(outcome, seen, str(os.getuid()))


@pytest.mark.timeout(60)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run the impostor as another user")
async def test_another_user_cannot_get_its_descriptors_into_a_worker(tmp_path: Path) -> None:
    outcome, seen = await _attach_through_an_impostor(tmp_path, NOBODY)
    _assert_refused(outcome, seen, str(NOBODY))
