"""Hostile input: arguments and results of any picklable shape and size (property-based, with
hypothesis), functions that raise BaseException subclasses, recurse without end, close stdout,
fork children of their own or block signals, and wrong types given to every public entry point.
Each must end in a clear, specific error and leave the pool healthy."""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_fns
import procpool
import workfns
from script_env import script_env

# Fast by default, for CI; HYPOTHESIS_PROFILE=thorough for a long run.
settings.register_profile(
    "procpool",
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.register_profile("thorough", settings.get_profile("procpool"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "procpool"))


@contextmanager
def _pool_in_a_thread(workers: int = 2) -> Iterator[tuple[anyio.from_thread.BlockingPortal, procpool.Pool]]:
    """A pool on an asyncio loop in another thread, so that a synchronous hypothesis test can use
    one pool for all its examples: ``portal.call(pool.run, fn, x)``."""
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(procpool.Pool(workers)) as pool,
    ):
        yield portal, pool


# -- arbitrary shapes and sizes ---------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.floats(allow_nan=False)
    | st.complex_numbers(allow_nan=False)
    | st.text()
    | st.binary()
    | st.binary().map(bytearray)
)
_hashables = st.none() | st.booleans() | st.integers() | st.text() | st.binary() | st.tuples(st.integers(), st.text())
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children)
        | st.tuples(children, children)
        | st.dictionaries(_hashables, children)
        | st.frozensets(_hashables)
        | st.sets(_hashables)
    ),
    max_leaves=40,
)


def test_any_value_goes_to_a_worker_and_back_unchanged() -> None:
    with _pool_in_a_thread() as (portal, pool):

        @given(value=_values)
        def round_trip(value: Any) -> None:
            assert portal.call(pool.run, hostile_fns.identity, value) == value

        round_trip()
        assert portal.call(pool.run, workfns.square, 3) == 9


_identifiers = st.from_regex(r"\A[a-z_][a-z0-9_]{0,10}\Z")


def test_any_positional_and_keyword_arguments_arrive_as_given() -> None:
    with _pool_in_a_thread() as (portal, pool):

        @given(args=st.lists(_values, max_size=5), kwargs=st.dictionaries(_identifiers, _values, max_size=5))
        def call(args: list[Any], kwargs: dict[str, Any]) -> None:
            def submit() -> Any:
                return pool.run(workfns.capture, *args, **kwargs)

            assert portal.call(submit) == (tuple(args), kwargs)

        call()


def test_any_value_carried_by_an_exception_arrives_with_it() -> None:
    with _pool_in_a_thread() as (portal, pool):

        @given(value=_values)
        def raise_it(value: Any) -> None:
            with pytest.raises(ValueError) as info:
                portal.call(pool.run, workfns.raise_value_error, value)
            assert info.value.args == (value,)
            assert isinstance(info.value.__cause__, procpool.RemoteTraceback)

        raise_it()


# Around the frame sizes where the channel's reader changes strategy (64 KiB, 256 KiB), and large.
_SIZES = [0, 1, 2**16 - 1, 2**16, 2**16 + 1, 2**18 - 40, 2**18, 2**18 + 1, 3 * 2**20 + 7, 64 * 2**20]


def test_payloads_of_every_size_cross_intact() -> None:
    with _pool_in_a_thread() as (portal, pool):

        @settings(max_examples=len(_SIZES) * 2)
        @given(size=st.sampled_from(_SIZES), fill=st.integers(0, 255))
        def send(size: int, fill: int) -> None:
            payload = bytes([fill]) * size
            result = portal.call(pool.run, hostile_fns.identity, payload)
            assert len(result) == size
            assert result == payload

        send()
        big = os.urandom(16 * 2**20)  # incompressible, and several in flight at once

        async def three_at_once() -> list[bytes]:
            tasks = [pool.submit(hostile_fns.identity, big) for _ in range(3)]
            return [await task for task in tasks]

        assert portal.call(three_at_once) == [big] * 3


def test_self_referencing_arguments_and_results() -> None:
    with _pool_in_a_thread() as (portal, pool):
        items, mapping = portal.call(pool.run, hostile_fns.self_referencing)
        assert items[1] is items
        assert mapping["self"] is mapping
        assert mapping["items"] is items
        echoed = portal.call(pool.run, hostile_fns.identity, mapping)
        assert echoed["self"] is echoed
        assert echoed["items"][1] is echoed["items"]


@pytest.mark.parametrize("depth", [100, 250])
def test_deeply_nested_values_that_pickle_cross(depth: int) -> None:
    with _pool_in_a_thread() as (portal, pool):
        assert portal.call(pool.run, hostile_fns.depth_of, hostile_fns.nested_lists(depth)) == depth
        assert hostile_fns.depth_of(portal.call(pool.run, hostile_fns.nested_lists, depth)) == depth


def test_values_too_deep_to_pickle_fail_with_serialization_error() -> None:
    """Pickling a very deep value exceeds the recursion limit: the argument fails at the call
    site, the result fails its own task, and both say what could not travel."""
    with _pool_in_a_thread() as (portal, pool):
        too_deep = hostile_fns.nested_lists(100_000)
        with pytest.raises(procpool.SerializationError, match="an argument of"):
            portal.call(pool.run, hostile_fns.depth_of, too_deep)
        with pytest.raises(procpool.SerializationError, match="the result of"):
            portal.call(pool.run, hostile_fns.nested_lists, 100_000)
        assert portal.call(pool.run, workfns.square, 4) == 16


def test_nan_and_infinities_cross() -> None:
    with _pool_in_a_thread() as (portal, pool):
        values = portal.call(pool.run, hostile_fns.identity, [math.nan, math.inf, -math.inf, -0.0])
        assert math.isnan(values[0])
        assert values[1:3] == [math.inf, -math.inf]
        assert math.copysign(1, values[3]) == -1


# -- BaseException, recursion, stdout ---------------------------------------------------------------


@pytest.mark.anyio
async def test_system_exit_ends_the_worker_and_fails_only_its_task() -> None:
    """``sys.exit()`` in a task ends that worker as it would end any process: the task fails
    with `WorkerCrashedError` and its exit code; a replacement serves the next task."""
    async with procpool.Pool(1) as pool:
        for code, exitcode in ((5, 5), (None, 0), ("a message", 1)):
            pid = await pool.run(hostile_fns.getpid)
            with pytest.raises(procpool.WorkerCrashedError) as info:
                await pool.run(hostile_fns.raise_system_exit, code)
            assert (info.value.pid, info.value.exitcode, info.value.signal_name) == (pid, exitcode, None)
            assert "raise_system_exit" in str(info.value)
            assert await pool.run(workfns.square, 3) == 9


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fn", "type_name"),
    [
        (hostile_fns.raise_keyboard_interrupt, "builtins.KeyboardInterrupt"),
        (hostile_fns.raise_generator_exit, "builtins.GeneratorExit"),
        (hostile_fns.raise_custom_base, "hostile_fns.CustomBaseError"),
    ],
)
async def test_other_base_exceptions_arrive_as_remote_error(fn: Callable[[], None], type_name: str) -> None:
    """A BaseException that is not an Exception must not act on the parent (a KeyboardInterrupt
    would interrupt it): it arrives as `RemoteError` naming the type, and the worker goes on."""
    async with procpool.Pool(1) as pool:
        pid = await pool.run(hostile_fns.getpid)
        with pytest.raises(procpool.RemoteError) as info:
            await pool.run(fn)
        assert info.value.type_name == type_name
        assert "from the task" in info.value.message or type_name.endswith("CustomBaseError")
        assert fn.__name__ in info.value.traceback_text
        assert await pool.run(hostile_fns.getpid) == pid  # the same worker: it did not die


@pytest.mark.anyio
async def test_base_exceptions_from_async_functions_and_streams() -> None:
    async def async_interrupt() -> None:
        raise KeyboardInterrupt("from an async task")

    def interrupted_stream() -> Iterator[int]:
        yield 1
        raise KeyboardInterrupt("from a stream")

    async def async_exit() -> None:
        sys.exit(9)

    async with procpool.Pool(1) as pool:
        with pytest.raises(procpool.RemoteError, match="KeyboardInterrupt: from an async task"):
            await pool.run(async_interrupt)
        assert await pool.run(workfns.async_square, 3) == 9  # the worker's loop still runs
        items = []
        with pytest.raises(procpool.RemoteError, match="KeyboardInterrupt: from a stream"):
            async for item in pool.stream(interrupted_stream):
                items.append(item)
        assert items == [1]
        with pytest.raises(procpool.WorkerCrashedError, match="exited with code 9"):
            await pool.run(async_exit)
        assert await pool.run(workfns.async_square, 4) == 16


@pytest.mark.anyio
async def test_endless_recursion_is_a_recursion_error() -> None:
    async with procpool.Pool(1) as pool:
        with pytest.raises(RecursionError) as info:
            await pool.run(hostile_fns.recurse)
        assert isinstance(info.value.__cause__, procpool.RemoteTraceback)
        assert "recurse" in info.value.__cause__.traceback_text
        assert await pool.run(workfns.square, 5) == 25


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fn", "forward_output", "error", "match"),
    [
        (hostile_fns.close_stdout_and_print, True, ValueError, "closed file"),
        (hostile_fns.close_stdout_and_print, False, ValueError, "closed file"),
        (hostile_fns.close_fd_1_and_print, False, OSError, "Bad file descriptor"),
    ],
)
async def test_writing_to_a_closed_stdout_fails_the_task_not_the_worker(
    fn: Callable[[], None], forward_output: bool, error: type[Exception], match: str
) -> None:
    """The task gets the error print raised, and the worker goes on."""
    async with procpool.Pool(1, forward_output=forward_output) as pool:
        pid = await pool.run(hostile_fns.getpid)
        with pytest.raises(error, match=match):
            await pool.run(fn)
        assert await pool.run(hostile_fns.getpid) == pid
        assert await pool.run(workfns.square, 6) == 36


@pytest.mark.anyio
async def test_forwarded_output_survives_a_task_closing_stdout_or_fd_1(capsys: pytest.CaptureFixture[str]) -> None:
    """With output forwarded (the default), print does not use fd 1, and a stdout a task closed
    is replaced before the next task."""
    async with procpool.Pool(1) as pool:
        await pool.run(hostile_fns.close_fd_1_and_print)
        with pytest.raises(ValueError, match="closed file"):
            await pool.run(hostile_fns.close_stdout_and_print)
        await pool.run(workfns.print_line, "printed after")
    assert capsys.readouterr().out.splitlines() == ["nobody reads this", "printed after"]


def test_printing_into_a_closed_pipe_fails_the_task_not_the_pool(tmp_path: Path) -> None:
    """The owner's stdout is a pipe whose reader has gone (``app | head -1``): a worker that
    prints gets BrokenPipeError as its task's error, and the pool carries on."""
    import subprocess

    script = tmp_path / "printer.py"
    script.write_text(
        "import anyio, procpool, hostile_fns\n"
        "async def main():\n"
        "    async with procpool.Pool(1) as pool:\n"
        "        try:\n"
        "            await pool.run(hostile_fns.print_lines, 100_000)\n"
        "        except BrokenPipeError:\n"
        "            pass\n"
        "        assert await pool.run(abs, -7) == 7\n"
        "        import sys; sys.stderr.write('healthy\\n')\n"
        "if __name__ == '__main__':\n"
        "    anyio.run(main)\n"
    )
    env = script_env()
    reader = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    done = subprocess.run(
        [sys.executable, str(script)], stdout=reader.stdin, stderr=subprocess.PIPE, text=True, timeout=30, env=env
    )
    reader.stdin.close()
    reader.wait(5)
    assert "healthy" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


# -- processes a task starts, and signals -------------------------------------------------------------


async def _read_pids(path: Path, count: int, timeout: float = 10) -> list[int]:
    with anyio.fail_after(timeout):
        return await hostile_fns.read_pids(path, count)


def _gone(pids: list[int], timeout: float = 3) -> bool:
    """Whether every pid has exited (or is a zombie waiting for a parent that is not us) in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.02)
    return False


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.anyio
async def test_cancelling_a_task_kills_the_processes_it_started(tmp_path: Path) -> None:
    """A task that forks, or starts a program, leaves children that are not the pool's; the
    worker leads its own process group, and a cancel kills the whole group."""
    path = tmp_path / "pids"
    pids: list[int] = []
    try:
        async with procpool.Pool(1) as pool:
            task = pool.submit(hostile_fns.fork_children_then_sleep, str(path), 30)
            pids = await _read_pids(path, 3)
            assert os.getpgid(pids[0]) == pids[0]  # the worker leads its group
            assert {os.getpgid(pid) for pid in pids[1:]} == {pids[0]}
            task.cancel()
            with pytest.raises(procpool.TaskCancelledError):
                await task
            assert _gone(pids), "a process the task started outlived the cancel"
            assert await pool.run(workfns.square, 2) == 4
    finally:
        _kill(pids[1:])


@pytest.mark.anyio
async def test_a_crashing_worker_takes_the_processes_its_task_started(tmp_path: Path) -> None:
    path = tmp_path / "pids"
    pids: list[int] = []
    try:
        async with procpool.Pool(1) as pool:
            task = pool.submit(hostile_fns.fork_children_then_sleep, str(path), 30)
            pids = await _read_pids(path, 3)
            os.kill(pids[0], signal.SIGKILL)
            # Noticed at once, not when the forked child (which must not hold the worker's channel
            # open) would have ended its 30 s sleep.
            with anyio.fail_after(10), pytest.raises(procpool.WorkerCrashedError, match="SIGKILL"):
                await task
            assert _gone(pids), "a process the task started outlived its worker"
    finally:
        _kill(pids[1:])


@pytest.mark.anyio
@pytest.mark.parametrize("fn", [hostile_fns.block_sigterm_then_sleep, hostile_fns.handle_sigterm_by_ignoring])
async def test_a_worker_that_resists_sigterm_is_killed_after_kill_grace(
    fn: Callable[[str, float], None], tmp_path: Path
) -> None:
    path = tmp_path / "pid"
    async with procpool.Pool(1, kill_grace=0.2) as pool:
        task = pool.submit(fn, str(path), 30)
        (pid,) = await _read_pids(path, 1)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(procpool.TaskCancelledError):
            await task
        assert time.monotonic() - started < 10  # not the 30 s the task asked for
        assert _gone([pid])
        assert await pool.run(workfns.square, 3) == 9


# -- wrong types at every public entry point -----------------------------------------------------------


def _lock() -> object:
    import threading

    return threading.Lock()


_BAD_CONSTRUCTIONS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("Pool(workers)", lambda: procpool.Pool("2"), ValueError, "workers must be a positive integer"),  # type: ignore[arg-type]
    ("Pool(initializer)", lambda: procpool.Pool(1, initializer=3), TypeError, "initializer must be callable"),  # type: ignore[arg-type]
    ("Pool(initargs)", lambda: procpool.Pool(1, initargs=5), TypeError, "initargs must be a tuple"),  # type: ignore[arg-type]
    ("Pool(initargs str)", lambda: procpool.Pool(1, initargs="ab"), TypeError, "initargs must be a tuple"),
    ("Pool(max_tasks)", lambda: procpool.Pool(1, max_tasks_per_worker=1.0), ValueError, "max_tasks_per_worker"),  # type: ignore[arg-type]
    ("Pool(start_method)", lambda: procpool.Pool(1, start_method=5), ValueError, "unknown start_method"),  # type: ignore[arg-type]
    (
        "Pool(kill_on_cancel)",
        lambda: procpool.Pool(1, kill_on_cancel="no"),
        TypeError,
        "kill_on_cancel must be True or False",
    ),  # type: ignore[arg-type]
    ("Pool(kill_grace str)", lambda: procpool.Pool(1, kill_grace="1"), ValueError, "kill_grace"),  # type: ignore[arg-type]
    ("Pool(kill_grace bool)", lambda: procpool.Pool(1, kill_grace=True), ValueError, "kill_grace"),
    ("Pool(kill_grace nan)", lambda: procpool.Pool(1, kill_grace=math.nan), ValueError, "kill_grace"),
    ("Pool(unknown)", lambda: procpool.Pool(1, bogus=1), TypeError, "unexpected keyword argument 'bogus'"),  # type: ignore[call-arg]
    ("configure_default_pool", lambda: procpool.configure_default_pool("x"), ValueError, "workers"),  # type: ignore[arg-type]
    ("Queue(maxsize)", lambda: procpool.Queue("x"), ValueError, "maxsize must be an integer"),  # type: ignore[arg-type]
    ("Queue(negative)", lambda: procpool.Queue(-1), ValueError, "maxsize must be an integer"),
    ("Pipe(duplex)", lambda: procpool.Pipe("x"), TypeError, "duplex must be True or False"),  # type: ignore[arg-type]
    ("Process(target)", lambda: procpool.Process(target=5), TypeError, "target must be callable"),  # type: ignore[arg-type]
    ("Process(args)", lambda: procpool.Process(target=print, args=5), TypeError, "args must be a tuple"),  # type: ignore[arg-type]
    ("Process(kwargs)", lambda: procpool.Process(target=print, kwargs=5), TypeError, "kwargs must be a mapping"),  # type: ignore[arg-type]
    ("Semaphore(value)", lambda: procpool.Semaphore("x"), ValueError, "semaphore's value"),  # type: ignore[arg-type]
    ("Semaphore(negative)", lambda: procpool.Semaphore(-1), ValueError, "semaphore's value"),
    ("Barrier(parties)", lambda: procpool.Barrier(0), ValueError, "parties must be a positive integer"),
    ("Barrier(action)", lambda: procpool.Barrier(2, action=5), TypeError, "action must be callable"),  # type: ignore[arg-type]
    ("Barrier(timeout)", lambda: procpool.Barrier(2, timeout="x"), TypeError, "timeout must be a number"),  # type: ignore[arg-type]
    ("Condition(lock)", lambda: procpool.Condition(5), TypeError, "lock must be a procpool.Lock"),  # type: ignore[arg-type]
    ("DaskPool(address)", lambda: procpool.DaskPool(5), TypeError, "address must be"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("construct", "error", "match"), [case[1:] for case in _BAD_CONSTRUCTIONS], ids=[c[0] for c in _BAD_CONSTRUCTIONS]
)
def test_wrong_types_to_constructors(construct: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        construct()


def test_wrong_types_to_ipc_methods() -> None:
    queue: procpool.Queue[Any] = procpool.Queue(1)
    first, second = procpool.Pipe()
    try:
        with pytest.raises(TypeError, match="timeout must be a number"):
            queue.get(timeout="x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout must be a number of seconds >= 0"):
            queue.get(timeout=math.nan)
        with pytest.raises(procpool.SerializationError, match="cannot be pickled"):
            queue.put(_lock())
        with pytest.raises(TypeError, match="timeout must be a number"):
            first.poll("x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            first.send_bytes("text")  # type: ignore[arg-type]
        with pytest.raises(procpool.SerializationError, match="cannot be pickled"):
            first.send(_lock())
        first.send("still works")
        assert second.recv() == "still works"
    finally:
        queue.close()
        first.close()
        second.close()


@pytest.mark.anyio
async def test_wrong_types_to_pool_methods() -> None:
    async with procpool.Pool(1) as pool:
        not_callable: Any = 5
        with pytest.raises(TypeError, match="fn must be a callable"):
            pool.submit(not_callable)
        with pytest.raises(TypeError, match="fn must be a callable"):
            await pool.run(not_callable)
        with pytest.raises(TypeError, match="fn must be a callable"):
            pool.stream(not_callable)
        with pytest.raises(TypeError, match="fn must be a callable"):
            pool.map(not_callable, [1])
        with pytest.raises(TypeError, match="iterables"):
            pool.map(abs, 5)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="iterables"):
            pool.starmap(abs, 5)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="ordered must be True or False"):
            pool.map(abs, [1], ordered="yes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="chunksize"):
            pool.map(abs, [1], chunksize="2")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_in_flight"):
            pool.map(abs, [1], max_in_flight=0)
        with pytest.raises(TypeError, match="kill_on_cancel must be True or False"):
            pool.options(kill_on_cancel="no")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            pool.options(bogus=True)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="fn must be a callable"):
            pool.executor.submit(not_callable)
        with pytest.raises(TypeError, match="timeout must be a number"):
            pool.executor.map(abs, [1], timeout="x")  # type: ignore[arg-type]
        with pytest.raises(procpool.SerializationError, match="an argument of"):
            pool.submit(abs, _lock())
        with pytest.raises(TypeError, match="as_completed\\(\\) takes"):
            async for _ in procpool.as_completed(5):  # type: ignore[arg-type]
                pass
        with pytest.raises(TypeError, match="as_completed\\(\\) takes tasks"):
            async for _ in procpool.as_completed([1]):  # type: ignore[list-item]
                pass
        # Wrong arguments for the function itself fail in the worker, with the function's error.
        with pytest.raises(TypeError, match="bad operand type for abs"):
            await pool.run(abs, "x")
        with pytest.raises(TypeError, match="not iterable"):
            await pool.starmap(abs, [5])
        with pytest.raises(TypeError, match="not iterable"):
            async for _ in pool.stream(abs, -1):
                pass
        task = pool.submit(workfns.sleep_and_return, 0.05, "late")
        with pytest.raises(procpool.InvalidStateError, match="not done yet"):
            task.result()
        assert await task == "late"
        assert await pool.run(workfns.square, 7) == 49


@pytest.mark.anyio
async def test_a_worker_killed_between_tasks_fails_none_of_them() -> None:
    """Tasks sent to a worker that dies before it begins them are not lost and do not fail: the
    worker notes in shared memory each task it begins, and the others go to its replacement."""
    async with procpool.Pool(1) as pool:
        await pool.map(workfns.square, range(20))  # tiny tasks: the slot now sends tasks ahead
        pid = await pool.run(hostile_fns.getpid)
        os.kill(pid, signal.SIGSTOP)  # idle, and now unable to begin anything
        tasks = [pool.submit(workfns.square, i) for i in range(5)]
        await anyio.sleep(0.2)  # sent to the stopped worker, waiting in its channel
        os.kill(pid, signal.SIGKILL)
        assert [await task for task in tasks] == [0, 1, 4, 9, 16]
        assert await pool.run(hostile_fns.getpid) != pid
