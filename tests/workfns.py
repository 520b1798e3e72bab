"""Functions that tests run in worker processes. Import-light: workers import this module."""

from __future__ import annotations

import asyncio
import ctypes
import io
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

_state: dict[str, Any] = {}


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0, *, scale: int = 1) -> int:
    return (a + b) * scale


def getpid() -> int:
    return os.getpid()


async def async_square(x: int) -> int:
    await asyncio.sleep(0.001)
    return x * x


def sleep_then_getpid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def sleep_and_return(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def touch_after(path: str, seconds: float) -> int:
    """Write our pid to ``path`` now, then sleep, then append 'done'."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(" done")
    return os.getpid()


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def raise_stop(kind: type[BaseException], value: Any) -> None:
    """Raise StopIteration or StopAsyncIteration carrying ``value``."""
    raise kind(value)


def yield_then_raise_stop(kind: type[BaseException], value: Any) -> Any:
    yield value
    raise kind(value)


def exit_hard(code: int) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfault() -> None:
    ctypes.string_at(0)


def call_sys_exit(code: int) -> None:
    sys.exit(code)


def return_lock() -> object:
    return threading.Lock()


def identity(x: Any) -> Any:
    return x


def repeat_to_size(data: bytes, size: int) -> bytes:
    """``data`` repeated (or cut) to ``size`` bytes; ``size`` zero bytes if ``data`` is empty."""
    return (data * (size // len(data) + 1))[:size] if data else bytes(size)


def start_time_and(x: Any) -> tuple[float, Any]:
    """When the worker started this call (one clock for all processes on Linux), and ``x``."""
    return time.monotonic(), x


class UnpicklableError(Exception):
    def __init__(self) -> None:
        super().__init__("carries a lock")
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise UnpicklableError()


class NeedsTwoArgsError(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}-{b}")  # args == ("a-b",): rebuilding calls __init__ with one arg


def raise_needs_two_args() -> None:
    raise NeedsTwoArgsError("a", "b")


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def set_state(key: str, value: Any) -> None:
    _state[key] = value


def get_state(key: str) -> Any:
    return _state.get(key)


def fail_initializer() -> None:
    raise RuntimeError("initializer refused")


class Multiplier:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def times(self, x: int) -> int:
        return x * self.factor


def touch_then_spin(path: str, n: int) -> int:
    """Write our pid to ``path``, then ``sum(range(n))``: a busy loop in C that never releases the GIL."""
    Path(path).write_text(str(os.getpid()))
    return sum(range(n))


def touch_then_sleep_ignoring_sigterm(path: str, seconds: float) -> None:
    """Ignore SIGTERM, write our pid to ``path``, then sleep: only SIGKILL stops this worker early."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def rendezvous(directory: str, me: str, other: str, timeout: float) -> bool:
    """Announce ``me`` and wait for ``other``: True only if both run at the same time."""
    Path(directory, me).touch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(directory, other).exists():
            return True
        time.sleep(0.005)
    return False


def mul(x: int, y: int) -> int:
    return x * y


def capture(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def thread_and_pid() -> tuple[int, int]:
    """The thread and process that run the call (InlinePool runs calls in this process)."""
    return threading.get_ident(), os.getpid()


async def async_sleep_and_return(seconds: float, value: Any = None) -> Any:
    await asyncio.sleep(seconds)
    return value


def count_up(n: int, log: str | None = None) -> Any:
    """Yield 0..n-1, appending each produced number to ``log``; 'closed' when the generator ends."""
    try:
        for i in range(n):
            if log:
                with open(log, "a") as f:
                    f.write(f"{i}\n")
            yield i
    finally:
        if log:
            with open(log, "a") as f:
                f.write("closed\n")


async def async_count_up(n: int) -> Any:
    for i in range(n):
        await asyncio.sleep(0.001)
        yield i


def numbers_list(n: int) -> list[int]:
    return list(range(n))


def fail_after_items(n: int) -> Any:
    yield from range(n)
    raise ValueError(f"failed after {n}")


def yield_then_sleep(seconds: float, log: str) -> Any:
    try:
        yield os.getpid()
        time.sleep(seconds)
        yield "late"
    finally:
        with open(log, "a") as f:
            f.write("closed\n")


def yield_then_wait_for_release(directory: str, timeout: float) -> Any:
    """Yield our pid, then wait for `wait_for_release`'s file and yield "late"; log 'closed' to
    ``directory``/log when the generator ends."""
    try:
        yield os.getpid()
        wait_for_release(directory, timeout)
        yield "late"
    finally:
        with open(Path(directory, "log"), "a") as f:
            f.write("closed\n")


def yield_then_die() -> Any:
    yield 1
    os._exit(9)


def yield_lock() -> Any:
    yield threading.Lock()


# -- IPC objects (procpool.Queue, Pipe, locks...): these only call their methods ------------------


def ipc_put_range(queue: Any, start: int, stop: int, delay: float = 0.0) -> None:
    """Put start..stop-1 on ``queue``, optionally pausing between items."""
    for i in range(start, stop):
        queue.put(i)
        if delay:
            time.sleep(delay)


def ipc_put_nowait_range_then_close(queue: Any, stop: int, done: Any) -> None:
    """``put_nowait`` 0..stop-1 on ``queue``, close it, set the ``done`` event, and return."""
    for i in range(stop):
        queue.put_nowait(i)
    queue.close()
    done.set()


def ipc_drain_in_order(queue: Any) -> tuple[int, int]:
    """Take items until ``queue`` is closed and drained: how many came, and how many of them
    came in order (0, 1, 2... up to the first out of place)."""
    received = in_order = 0
    for item in queue:
        if item == in_order == received:
            in_order += 1
        received += 1
    return received, in_order


def ipc_double_until_closed(source: Any, sink: Any) -> int:
    """Put 2*x on ``sink`` for each x taken from ``source`` until it is closed; how many."""
    count = 0
    for item in source:
        sink.put(2 * item)
        count += 1
    return count


def ipc_get_then_report(queue: Any, report: Any) -> None:
    """Block on ``queue.get()`` and report what happened (the item, or the error's type name)."""
    try:
        report.put(("item", queue.get(timeout=10)))
    except Exception as exc:
        report.put(("error", type(exc).__name__))


def ipc_put_then_report(queue: Any, item: Any, report: Any) -> None:
    try:
        queue.put(item, timeout=10)
        report.put(("put", item))
    except Exception as exc:
        report.put(("error", type(exc).__name__))


def ipc_echo(conn: Any) -> None:
    """Send back ("echo", message) for each message until the end of file."""
    for message in conn:
        conn.send(("echo", message))
    conn.close()


def ipc_send_range(conn: Any, start: int, stop: int) -> None:
    for i in range(start, stop):
        conn.send(i)
    conn.close()


def ipc_locked_appends(lock: Any, log: str, rounds: int) -> None:
    """Append "<pid> in" and "<pid> out" lines to ``log`` under ``lock``, ``rounds`` times."""
    for _ in range(rounds):
        with lock:
            with open(log, "a") as f:
                f.write(f"{os.getpid()} in\n")
            time.sleep(0.002)
            with open(log, "a") as f:
                f.write(f"{os.getpid()} out\n")


def ipc_hold_semaphore(semaphore: Any, report: Any, seconds: float) -> None:
    with semaphore:
        report.put(os.getpid())
        time.sleep(seconds)


def ipc_wait_event(event: Any, report: Any) -> None:
    report.put(("ready", os.getpid()))
    report.put(("woken", event.wait(10)))


def ipc_condition_waiter(condition: Any, flag: Any, report: Any) -> None:
    """Wait on ``condition`` until ``flag`` (an Event) is set; report the outcome."""
    with condition:
        report.put("waiting")
        report.put(("done", condition.wait_for(flag.is_set, 10)))


def ipc_barrier_wait(barrier: Any, report: Any) -> None:
    try:
        report.put(("index", barrier.wait(10)))
    except threading.BrokenBarrierError:
        report.put(("broken", None))


def ipc_hold_then_block(queue: Any, conn: Any, lock: Any, semaphore: Any, report: Any) -> None:
    """Take ``lock`` and a unit of ``semaphore``, fill ``queue`` (maxsize 1), report, then block in
    a second put, holding ``conn`` (an end of a pipe) too, until the test kills this process."""
    lock.acquire()
    semaphore.acquire()
    queue.put("first")
    report.put("holding")
    queue.put("second")


def ipc_take_then_die(condition: Any) -> None:
    """Take ``condition``'s lock (once the parent's wait lets it go) and die holding it."""
    condition.acquire()
    os.kill(os.getpid(), signal.SIGKILL)


def ipc_take_then_die_unrecorded(condition: Any) -> None:
    """As `ipc_take_then_die`, but die as if killed in the instant between taking the lock and
    recording itself as its holder (white-box: it clears the record the lock keeps)."""
    condition.acquire()
    lock = condition._lock
    lock._holder[:] = bytes(len(lock._holder))
    os.kill(os.getpid(), signal.SIGKILL)


def ipc_barrier_wait_last(barrier: Any, report: Any) -> None:
    """Arrive once every other party waits: this process is the last, and runs the action."""
    while barrier.n_waiting < barrier.parties - 1:
        time.sleep(0.005)
    ipc_barrier_wait(barrier, report)


def ipc_shared_writes(shared_dict: Any, shared_list: Any, count: int) -> int:
    """Plain access through multiprocessing's proxies: what a child does with shared state."""
    for i in range(count):
        shared_dict[f"{os.getpid()}-{i}"] = i
        shared_list.append(i)
    return os.getpid()


def ipc_increment(shared_dict: Any, lock: Any, key: str, times: int) -> None:
    for _ in range(times):
        with lock:
            shared_dict[key] = shared_dict.get(key, 0) + 1


def sleep_then_kill_self(seconds: float) -> None:
    time.sleep(seconds)
    os.kill(os.getpid(), signal.SIGKILL)


def echo_after_spin(value: int, spins: int = 2000) -> int:
    """Return ``value`` after a little CPU work, so a kill often lands mid-task."""
    total = 0
    for i in range(spins):
        total += i
    return value


def log_at(name: str, level: int, message: str, extra: dict[str, Any] | None = None) -> int:
    """Log ``message`` (with ``%s`` of the pid) on logger ``name``; returns the worker's pid."""
    import logging

    logging.getLogger(name).log(level, message, os.getpid(), extra=extra)
    return os.getpid()


def log_exception(name: str) -> None:
    import logging

    try:
        raise ValueError("logged from a worker")
    except ValueError:
        logging.getLogger(name).exception("caught it")


def print_both(out: str, err: str) -> int:
    print(out)
    print(err, file=sys.stderr)
    print("no newline yet", end="")  # a partial line still goes out with the result
    return os.getpid()


def close_stdout() -> None:
    sys.stdout.close()


def write_to_binary_buffers() -> None:
    """Bytes through ``sys.stdout.buffer`` and ``sys.stderr.buffer``, between printed text."""
    print("printed first")
    sys.stdout.buffer.write(b"bytes: \xc3")  # an \xe9 cut in two, across writes and a flush
    sys.stdout.buffer.flush()
    sys.stdout.buffer.write(bytearray(b"\xa9\n"))
    print("printed", end=" ")
    sys.stdout.buffer.write(memoryview(b"then bytes\n"))
    sys.stderr.buffer.write("to stderr \u2713\n".encode())
    sys.stdout.buffer.write(b"no newline yet")  # a partial line still goes out with the result


def print_through_a_wrapper(text: str) -> None:
    """Print through a text wrapper of ``sys.stdout.buffer``, then drop it: collecting it closes
    the buffer under it, and so stdout, as it would in any process."""
    wrapper = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
    print(text, file=wrapper)


def print_line(text: str) -> None:
    print(text)


def fork_then_print_and_log(text: str) -> int:
    """Fork a child that prints ``text`` and logs it as a warning; the child's exit status."""
    pid = os.fork()
    if pid == 0:
        try:
            print(f"print: {text}", flush=True)
            logging.getLogger("forked").warning("log: %s", text)
            sys.stderr.flush()
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1]


def print_in_initializer(text: str) -> None:
    print(text, flush=True)


def report_steps(steps: int, pause: float) -> int:
    import procpool

    for done in range(1, steps + 1):
        time.sleep(pause)
        procpool.report_progress(done, steps)
    return steps


def kill_self_unless(path: str, value: Any = None) -> Any:
    """SIGKILL this worker the first time (creating ``path``); return ``value`` once it exists."""
    if not os.path.exists(path):
        Path(path).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def hold_memory(nbytes: int, seconds: float = 0.0) -> int:
    """Keep ``nbytes`` of touched memory alive in this worker; return its pid."""
    _state.setdefault("held", []).append(bytearray(b"x" * nbytes))
    time.sleep(seconds)
    return os.getpid()


def fail_initializer_if(path: str) -> None:
    """An initializer that raises once ``path`` exists."""
    if os.path.exists(path):
        raise RuntimeError(f"initializer refused: {path} exists")


def touch_and_chatter(path: str, seconds: float) -> None:
    """Write our pid to ``path``, then sleep while a helper thread prints and logs without
    pause, as a task's own threads may: its reports reach the parent over the worker's channel."""

    def chatter() -> None:
        log = logging.getLogger("workfns.chatter")
        n = 0
        while True:
            n += 1
            print(f"chatter {n}", flush=True)
            log.warning("chatter %d", n)
            time.sleep(0.001)

    threading.Thread(target=chatter, daemon=True).start()
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def wait_for_release(directory: str, timeout: float) -> int:
    """Write our pid to ``directory``/pid, then wait up to ``timeout`` s for ``directory``/release."""
    Path(directory, "pid.tmp").write_text(str(os.getpid()))
    Path(directory, "pid.tmp").rename(Path(directory, "pid"))  # whole, or not there yet
    release = Path(directory, "release")
    deadline = time.monotonic() + timeout
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    return os.getpid()


def append_line(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(f"{text}\n")


def received(obj: Any) -> str:
    """Only that the task's arguments arrived (a shared IPC object: attached)."""
    return "received"


def leave_shared_memory() -> str:
    """Create a multiprocessing shared memory segment and leave it (closed, not unlinked): for
    multiprocessing's resource tracker to remove. Its name."""
    from multiprocessing import shared_memory

    segment = shared_memory.SharedMemory(create=True, size=4096)
    segment.close()
    return segment.name
