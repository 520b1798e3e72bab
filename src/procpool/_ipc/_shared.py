"""`Manager`: a server process holding shared dicts and lists, with an async face in the parent.

The server is a ``multiprocessing`` ``SyncManager``, so children use its standard proxies: a
`SharedDict` or `SharedList` passed to a child arrives as a ``DictProxy``/``ListProxy`` with plain,
blocking access (``d[k] = v``). The parent talks to the server over one connection of its own in
the manager's wire format (length-prefixed pickles), read and written without blocking, driven by
the socket's readiness: no thread per call. Starting and stopping the server (``SyncManager.start``
and ``shutdown``, which block) run in a worker thread, once per manager.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import socket
import struct
from collections.abc import Mapping
from multiprocessing import connection, managers
from multiprocessing.context import get_spawning_popen
from multiprocessing.reduction import ForkingPickler
from types import TracebackType
from typing import Any, NoReturn

import anyio

from .._child import arm_lifeline
from .._errors import InvalidStateError
from .._launch import mp_lock, worker_context
from .._sizing import check_start_method

_LENGTH = struct.Struct("!i")
_LONG_LENGTH = struct.Struct("!Q")


class _Factory:
    """Lives in the manager process and makes the objects the parent asks for (as new proxies)."""

    def dict(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def list(self, *args: Any) -> list[Any]:
        return list(*args)


class _Server(managers.SyncManager):
    pass


_Server.register(
    "procpool_factory", _Factory, exposed=("dict", "list"), method_to_typeid={"dict": "dict", "list": "list"}
)


def _start_server(server: _Server, lifeline: socket.socket) -> tuple[str, socket.socket]:
    """Start the server and open the parent's connection (blocking: runs in a worker thread)."""
    with mp_lock:  # multiprocessing reaps other children from inside start() (see _process)
        server.start(arm_lifeline, (lifeline,))
    try:
        address = server.address
        assert address is not None
        authkey = multiprocessing.current_process().authkey
        # `dispatch` is one request in the managers' protocol (not in the type stubs).
        dispatch = managers.dispatch  # type: ignore[attr-defined]
        with connection.Client(address, authkey=authkey) as conn:
            factory_id, _exposed = dispatch(conn, None, "create", ("procpool_factory",))
        with connection.Client(address, authkey=authkey) as conn:
            dispatch(conn, None, "accept_connection", ("procpool-async",))
            sock = socket.socket(fileno=os.dup(conn.fileno()))
    except BaseException:
        _stop_server(server)
        raise
    sock.setblocking(False)  # this connection is the parent's alone
    return factory_id, sock


def _stop_server(server: _Server) -> None:
    with mp_lock:
        server.shutdown()
        # The pipes multiprocessing keeps to the server process (its exit status and the data pipe)
        # close when its process object is collected; whoever still holds that object (a frame in a
        # traceback, another thread's locals) would keep them open. Shutdown has reaped it: close now.
        process = getattr(server, "_process", None)
        if process is not None and process.exitcode is not None:
            process.close()


class Manager:
    """A manager process serving shared dicts and lists, started and stopped with ``async with``.

    Example::

        async with procpool.Manager() as manager:
            scores = await manager.dict()
            await pool.run(record, scores)      # the child writes scores["x"] = 1
            print(await scores.get("x"))

    Args:
        start_method: ``"forkserver"`` (the default on Linux) or ``"spawn"``.

    Raises:
        ValueError: an unknown or unsupported start method.
    """

    def __init__(self, *, start_method: str | None = None) -> None:
        self._start_method = check_start_method(start_method)
        self._server: _Server | None = None
        self._sock: socket.socket | None = None
        self._lifeline: socket.socket | None = None
        self._factory_id: Any = None
        self._lock = anyio.Lock()
        self._closed = False
        # The connection stays in step through cancelled calls: what a call did not get to send
        # waits in the outbox for the next call, which also reads (and drops) the replies owed to
        # the cancelled ones before its own; a reply read in part stays in the inbox.
        self._outbox = bytearray()
        self._inbox = bytearray()
        self._owed = 0

    def __reduce__(self) -> NoReturn:
        raise TypeError("a procpool.Manager cannot be pickled; pass the dicts and lists it made instead")

    async def __aenter__(self) -> Manager:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the manager process; returns once it serves.

        Raises:
            InvalidStateError: the manager was already started.
        """
        if self._server is not None or self._closed:
            raise InvalidStateError("a procpool.Manager can be started only once; create a new one")
        server = _Server(ctx=worker_context(self._start_method))
        parent_lifeline, child_lifeline = socket.socketpair()
        try:
            self._factory_id, self._sock = await anyio.to_thread.run_sync(_start_server, server, child_lifeline)
        except BaseException:
            parent_lifeline.close()
            raise
        finally:
            child_lifeline.close()
        self._server = server
        self._lifeline = parent_lifeline  # the server dies with this process, like pool workers

    async def aclose(self) -> None:
        """Stop the manager process (idempotent). Shared objects are gone with it."""
        if self._closed:
            return
        self._closed = True
        if self._sock is not None:
            self._sock.close()
        if self._server is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_stop_server, self._server)
        if self._lifeline is not None:
            self._lifeline.close()

    async def dict(self, *args: Any, **kwargs: Any) -> SharedDict:
        """A new shared dict, initialised like ``dict(*args, **kwargs)``."""
        return SharedDict(self, await self._call(self._factory_id, "dict", args, kwargs))

    async def list(self, *args: Any) -> SharedList:
        """A new shared list, initialised like ``list(*args)``."""
        return SharedList(self, await self._call(self._factory_id, "list", args))

    async def _call(
        self, ident: Any, method: str, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        """Call ``method`` of the managed object ``ident`` and return its result.

        A cancelled call ends at once, and may still take effect: a request sent in part is
        completed by the next call, and the reply of a cancelled call is dropped.
        """
        if self._sock is None or self._closed:
            raise InvalidStateError("the manager is not running: use it inside `async with procpool.Manager()`")
        request = bytes(ForkingPickler.dumps((ident, method, args, kwargs or {})))
        if len(request) > 0x7FFFFFFF:
            header = _LENGTH.pack(-1) + _LONG_LENGTH.pack(len(request))
        else:
            header = _LENGTH.pack(len(request))
        async with self._lock:
            self._outbox += header
            self._outbox += request
            self._owed += 1  # this call's reply, until it is read
            await self._flush()
            while self._owed > 1:  # the replies to cancelled calls come first
                await self._read_reply()
                self._owed -= 1
            reply = await self._read_reply()
            self._owed -= 1
        kind, result = pickle.loads(reply)
        if kind == "#RETURN":
            return result
        if kind == "#PROXY":
            _exposed, token = result
            return token
        raise managers.convert_to_error(kind, result)  # type: ignore[attr-defined]

    async def _flush(self) -> None:
        assert self._sock is not None
        while self._outbox:
            try:
                sent = self._sock.send(self._outbox)
            except BlockingIOError:
                await anyio.wait_writable(self._sock)
                continue
            del self._outbox[:sent]

    async def _read_reply(self) -> bytes:
        """The next reply, taken from the inbox once whole (a cancellation loses none of it)."""
        assert self._sock is not None
        while True:
            missing = self._missing()
            if not missing:
                break
            try:
                chunk = self._sock.recv(max(missing, 65536))
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            if not chunk:
                raise ConnectionError("the manager process has gone away")
            self._inbox += chunk
        start, size = self._frame()
        reply = bytes(self._inbox[start : start + size])
        del self._inbox[: start + size]
        return reply

    def _frame(self) -> tuple[int, int]:
        """Where the first reply in the inbox starts, and its size (-1: its header is not in yet)."""
        inbox = self._inbox
        if len(inbox) < _LENGTH.size:
            return 0, -1
        (size,) = _LENGTH.unpack_from(inbox)
        if size != -1:
            return _LENGTH.size, size
        if len(inbox) < _LENGTH.size + _LONG_LENGTH.size:
            return 0, -1
        (size,) = _LONG_LENGTH.unpack_from(inbox, _LENGTH.size)
        return _LENGTH.size + _LONG_LENGTH.size, size

    def _missing(self) -> int:
        """How many more bytes the first reply needs, at least (0: it is whole in the inbox)."""
        start, size = self._frame()
        if size < 0:
            return _LENGTH.size + _LONG_LENGTH.size - len(self._inbox)
        return max(0, start + size - len(self._inbox))


class _Shared:
    _proxy_type: type[managers.BaseProxy]

    def __init__(self, manager: Manager, token: managers.Token) -> None:
        self._manager = manager
        self._token = token

    def __reduce__(self) -> tuple[Any, ...]:
        # Children get multiprocessing's own proxy for the object; it authenticates with the
        # authkey that children inherit from this process (sent along while spawning).
        kwds = {"authkey": multiprocessing.current_process().authkey} if get_spawning_popen() is not None else {}
        rebuild = managers.RebuildProxy  # type: ignore[attr-defined]  # (not in the type stubs)
        return rebuild, (self._proxy_type, self._token, "pickle", kwds)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._manager._call(self._token.id, method, args, kwargs)


class SharedDict(_Shared):
    """A dict held by a `Manager` process. In the parent, every access is awaited
    (``await d.get(k)``, ``await d.set(k, v)``); passed to a child, it arrives as a
    ``multiprocessing`` ``DictProxy`` with plain access (``d[k] = v``)."""

    _proxy_type = managers.DictProxy

    def __repr__(self) -> str:
        return f"<procpool.SharedDict id={self._token.id!r}>"

    async def get(self, key: Any, default: Any = None) -> Any:
        """``d.get(key, default)``."""
        return await self._call("get", key, default)

    async def set(self, key: Any, value: Any) -> None:
        """``d[key] = value``."""
        await self._call("__setitem__", key, value)

    async def delete(self, key: Any) -> None:
        """``del d[key]``; raises `KeyError` if it is missing."""
        await self._call("__delitem__", key)

    async def pop(self, key: Any, *default: Any) -> Any:
        """``d.pop(key[, default])``."""
        return await self._call("pop", key, *default)

    async def setdefault(self, key: Any, default: Any = None) -> Any:
        """``d.setdefault(key, default)``."""
        return await self._call("setdefault", key, default)

    async def update(self, *args: Any, **kwargs: Any) -> None:
        """``d.update(...)``."""
        await self._call("update", *args, **kwargs)

    async def keys(self) -> list[Any]:
        """The keys, as a list."""
        return list(await self._call("keys"))

    async def values(self) -> list[Any]:
        """The values, as a list."""
        return list(await self._call("values"))

    async def items(self) -> list[tuple[Any, Any]]:
        """The items, as a list of pairs."""
        return list(await self._call("items"))

    async def len(self) -> int:
        """``len(d)``."""
        length: int = await self._call("__len__")
        return length

    async def contains(self, key: Any) -> bool:
        """``key in d``."""
        return bool(await self._call("__contains__", key))

    async def copy(self) -> dict[Any, Any]:
        """A plain dict with the current contents."""
        copied: dict[Any, Any] = await self._call("copy")
        return copied

    async def clear(self) -> None:
        """``d.clear()``."""
        await self._call("clear")


class SharedList(_Shared):
    """A list held by a `Manager` process. In the parent, every access is awaited
    (``await l.append(x)``, ``await l.get(0)``); passed to a child, it arrives as a
    ``multiprocessing`` ``ListProxy`` with plain access (``l.append(x)``, ``l[0]``)."""

    _proxy_type = managers.ListProxy

    def __repr__(self) -> str:
        return f"<procpool.SharedList id={self._token.id!r}>"

    async def get(self, index: int | slice) -> Any:
        """``l[index]``."""
        return await self._call("__getitem__", index)

    async def set(self, index: int | slice, value: Any) -> None:
        """``l[index] = value``."""
        await self._call("__setitem__", index, value)

    async def delete(self, index: int | slice) -> None:
        """``del l[index]``."""
        await self._call("__delitem__", index)

    async def append(self, value: Any) -> None:
        """``l.append(value)``."""
        await self._call("append", value)

    async def extend(self, values: Any) -> None:
        """``l.extend(values)``."""
        await self._call("extend", list(values))

    async def insert(self, index: int, value: Any) -> None:
        """``l.insert(index, value)``."""
        await self._call("insert", index, value)

    async def pop(self, index: int = -1) -> Any:
        """``l.pop(index)``."""
        return await self._call("pop", index)

    async def remove(self, value: Any) -> None:
        """``l.remove(value)``."""
        await self._call("remove", value)

    async def index(self, value: Any) -> int:
        """``l.index(value)``."""
        position: int = await self._call("index", value)
        return position

    async def count(self, value: Any) -> int:
        """``l.count(value)``."""
        number: int = await self._call("count", value)
        return number

    async def len(self) -> int:
        """``len(l)``."""
        length: int = await self._call("__len__")
        return length

    async def copy(self) -> list[Any]:
        """A plain list with the current contents."""
        return list(await self._call("__getitem__", slice(None)))
