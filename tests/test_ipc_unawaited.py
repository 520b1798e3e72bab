"""A forgotten ``await`` on a method of an IPC object is reported by that method's public name,
as Python reports a forgotten ``async def`` method: "coroutine 'Queue.put' was never awaited"."""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable

import pytest

import procpool
from ipc_support import no_thread_left  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.anyio


async def _call(call: Callable[[], object]) -> None:
    call()


async def _holding_condition(call: Callable[[procpool.Condition], object]) -> None:
    condition = procpool.Condition()
    async with condition:  # its waits and notifications need the lock
        call(condition)


# The name Python gives each forgotten call (an inherited method's is its class's, as for any
# method), and a coroutine that makes the call and drops its awaitable.
FORGOTTEN: list[tuple[str, Callable[[], Awaitable[None]]]] = [
    ("Queue.put", lambda: _call(lambda: procpool.Queue().put(1))),
    ("Queue.get", lambda: _call(lambda: procpool.Queue().get())),
    ("Connection.send", lambda: _call(lambda: procpool.Pipe()[0].send(1))),
    ("Connection.send_bytes", lambda: _call(lambda: procpool.Pipe()[0].send_bytes(b"1"))),
    ("Connection.recv", lambda: _call(lambda: procpool.Pipe()[0].recv())),
    ("Connection.recv_bytes", lambda: _call(lambda: procpool.Pipe()[0].recv_bytes())),
    ("Connection.poll", lambda: _call(lambda: procpool.Pipe()[0].poll(1))),
    ("Semaphore.acquire", lambda: _call(lambda: procpool.Semaphore().acquire())),
    ("Semaphore.acquire", lambda: _call(lambda: procpool.BoundedSemaphore().acquire())),
    ("Semaphore.acquire", lambda: _call(lambda: procpool.Lock().acquire())),
    ("Event.wait", lambda: _call(lambda: procpool.Event().wait())),
    ("Condition.wait", lambda: _holding_condition(lambda condition: condition.wait())),
    ("Condition.wait_for", lambda: _holding_condition(lambda condition: condition.wait_for(bool))),
    ("Condition.notify", lambda: _holding_condition(lambda condition: condition.notify())),
    ("Condition.notify_all", lambda: _holding_condition(lambda condition: condition.notify_all())),
    ("Barrier.wait", lambda: _call(lambda: procpool.Barrier(2).wait())),
    ("Barrier.reset", lambda: _call(lambda: procpool.Barrier(2).reset())),
    ("Barrier.abort", lambda: _call(lambda: procpool.Barrier(2).abort())),
]


async def test_forgotten_await_names_the_method() -> None:
    for method, forget in FORGOTTEN:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await forget()  # the awaitable is dropped, unawaited, in there: Python warns at once
        assert [(w.category, str(w.message)) for w in caught] == [
            (RuntimeWarning, f"coroutine '{method}' was never awaited")
        ]
