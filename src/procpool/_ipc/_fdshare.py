"""How the file descriptors of an IPC object (Queue, Pipe, Lock...) reach another process.

An object pickled while multiprocessing starts a child (``procpool.Process``, or a plain
``multiprocessing.Process`` under spawn or forkserver) sends its descriptors with the start, the
standard way (``multiprocessing.reduction.DupFd``).

A process that is already running (a pool worker, or one that receives the object through a
Queue) cannot inherit anything, and the kernel offers no way to *take* a descriptor from another
process without ptrace rights. So the owner *hands* them over: a process-wide share point, a unix
socket served by one small thread, sends the descriptors with ``SCM_RIGHTS`` to whoever presents
the object's random key. The thread exists only while at least one object of this process is
shared this way, and is never involved in an object's operations: it serves attachments, not calls.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shutil
import socket
import struct
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from multiprocessing import context as mp_context
from multiprocessing import reduction
from typing import Any

_KEY_SIZE = 16
_ATTACH_TIMEOUT = 10.0
_OK, _UNKNOWN = b"\x01", b"\x00"


class _Owned:
    """The sockets and raw descriptors of one object in this process, closed exactly once."""

    def __init__(self, sockets: list[socket.socket], fds: list[int]) -> None:
        self.sockets = sockets
        self.fds = fds
        self.share: tuple[_ShareServer, bytes] | None = None

    def all_fds(self) -> list[int]:
        return [s.fileno() for s in self.sockets] + self.fds

    def close(self) -> None:
        if self.share is not None:
            server, key = self.share
            self.share = None
            _unshare(server, key)  # before closing, so the share point never sends a closed fd
        for sock in self.sockets:
            sock.close()
        for fd in self.fds:
            os.close(fd)
        self.sockets, self.fds = [], []


class Handles:
    """The file descriptors an IPC object holds in this process.

    Pickling sends them to the process that unpickles (see the module docstring); they are closed
    when the owning object is garbage-collected, or by `close`.

    Args:
        sockets: socket objects (closed with ``socket.close``).
        fds: other descriptors (pipes, memfds; closed with ``os.close``).
    """

    def __init__(self, sockets: Sequence[socket.socket] = (), fds: Sequence[int] = ()) -> None:
        self._owned = _Owned(list(sockets), list(fds))
        self._finalizer = weakref.finalize(self, self._owned.close)

    @property
    def sockets(self) -> list[socket.socket]:
        return self._owned.sockets

    @property
    def fds(self) -> list[int]:
        return self._owned.fds

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Close every descriptor now (idempotent)."""
        self._finalizer()

    def __reduce__(self) -> tuple[Any, ...]:
        owned = self._owned
        if self.closed:
            raise ValueError("this procpool object is closed in this process and cannot be sent to another one")
        fds = owned.all_fds()
        if mp_context.get_spawning_popen() is not None:
            # multiprocessing is starting a child right now: the descriptors travel with the start.
            return _inherit, (len(owned.sockets), [reduction.DupFd(fd) for fd in fds])
        if owned.share is None:
            owned.share = _share(fds)
        server, key = owned.share
        return _attach, (len(owned.sockets), len(fds), server.address, key, os.getpid())


def _from_fds(socket_count: int, fds: list[int]) -> Handles:
    return Handles([socket.socket(fileno=fd) for fd in fds[:socket_count]], fds[socket_count:])


def _inherit(socket_count: int, dup_fds: list[Any]) -> Handles:
    return _from_fds(socket_count, [dup_fd.detach() for dup_fd in dup_fds])


def _attach(socket_count: int, fd_count: int, address: str | bytes, key: bytes, owner_pid: int) -> Handles:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(_ATTACH_TIMEOUT)
            conn.connect(address)
            # Once the owner stops sharing, its socket's name is free, and anyone may bind it: only
            # the owner itself may hand over descriptors (and with them, pickles to unpickle here).
            impostor = _impostor(conn, owner_pid)
            if impostor is not None:
                raise PermissionError(
                    f"refused to attach to a procpool object: the process serving it is {impostor}, not its "
                    f"owner, process {owner_pid} of this user; the owner has stopped sharing it (closed it, or "
                    "exited) and another process took over its name"
                )
            conn.sendall(key)
            message, fds, _flags, _address = socket.recv_fds(conn, 1, fd_count)
    except PermissionError:
        raise
    except OSError as exc:
        raise ConnectionError(
            f"could not attach to a procpool object shared by process {owner_pid} ({exc}): that process "
            "has exited or closed the object; keep it open until every process has received it"
        ) from exc
    if message != _OK or len(fds) != fd_count:
        for fd in fds:
            os.close(fd)
        raise ConnectionError(
            f"process {owner_pid} no longer shares this procpool object: it was closed or garbage-collected "
            "there; keep a reference to it in the owner until every process has received it"
        )
    return _from_fds(socket_count, fds)


# -- the share point ---------------------------------------------------------------------------

# Guards _server and every share table; reentrant because a finalizer may run (and unshare) on any
# thread that allocates, including one that holds it.
_lock = threading.RLock()
_server: _ShareServer | None = None


class _ShareServer:
    """A listening unix socket and the thread that answers it, while this process shares objects."""

    def __init__(self) -> None:
        self.table: dict[bytes, list[int]] = {}
        self._directory: str | None = None
        with contextlib.ExitStack() as undo:  # on failure, closes (and removes) what was made
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            undo.callback(listener.close)
            if sys.platform == "linux":
                # The abstract namespace: no file to clean up, gone when the socket closes.
                self.address: str | bytes = f"\0procpool-{os.getpid()}-{secrets.token_hex(8)}"
            else:
                self._directory = tempfile.mkdtemp(prefix="procpool-")  # private (0700): only our user connects
                undo.callback(shutil.rmtree, self._directory, ignore_errors=True)
                self.address = os.path.join(self._directory, "share")
            listener.bind(self.address)
            listener.listen(64)
            listener.setblocking(False)
            self._listener = listener
            self._wake_r, self._wake_w = os.pipe()
            undo.callback(os.close, self._wake_r)
            undo.callback(os.close, self._wake_w)
            self._thread = threading.Thread(target=self._serve, name="procpool-fd-share", daemon=True)
            self._thread.start()  # from now on, the thread closes them on its way out
            undo.pop_all()

    def stop(self) -> None:
        os.write(self._wake_w, b"x")  # the thread closes everything on its way out

    def _serve(self) -> None:
        poller = select.poll()
        poller.register(self._listener, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if self._wake_r in ready:
                    return
                try:
                    conn, _ = self._listener.accept()
                except OSError:  # the client gave up already
                    continue
                with conn:
                    self._answer(conn)
        finally:
            self._listener.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)  # a client that connects and says nothing cannot stall the others
        try:
            if not _same_user(conn):
                return
            key = b""
            while len(key) < _KEY_SIZE:
                chunk = conn.recv(_KEY_SIZE - len(key))
                if not chunk:
                    return
                key += chunk
            with _lock:  # the owner cannot close these descriptors while they are being sent
                fds = self.table.get(key)
                if fds is None:
                    conn.sendall(_UNKNOWN)
                else:
                    socket.send_fds(conn, [_OK], fds)
        except OSError:
            pass  # the client went away; it reports the failure itself


def _same_user(conn: socket.socket) -> bool:
    credentials = _peer(conn)
    return credentials is None or credentials[1] == os.getuid()


def _impostor(conn: socket.socket, owner_pid: int) -> str | None:
    """Who serves ``conn`` if not the process ``owner_pid`` of this user; None if it is."""
    credentials = _peer(conn)
    if credentials is None:
        return None
    pid, uid, _gid = credentials
    if (pid, uid) == (owner_pid, os.getuid()):
        return None
    return f"process {pid} of user {uid}"


def _peer(conn: socket.socket) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end of a unix socket, as the kernel saw it when
    that process connected or listened; None where the kernel does not say (not Linux: there the
    socket lives in a private directory, 0700, that only this user can reach)."""
    peer_credentials = getattr(socket, "SO_PEERCRED", None)
    if peer_credentials is None:
        return None
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, peer_credentials, struct.calcsize("3i")))
    return pid, uid, gid


def _share(fds: list[int]) -> tuple[_ShareServer, bytes]:
    global _server
    with _lock:
        if _server is None:
            _server = _ShareServer()
        key = secrets.token_bytes(_KEY_SIZE)
        _server.table[key] = fds
        return _server, key


def _unshare(server: _ShareServer, key: bytes) -> None:
    global _server
    with _lock:
        server.table.pop(key, None)
        if not server.table and server is _server:
            _server = None
            server.stop()


def _forget_after_fork() -> None:
    # A forked child has the table but not the thread; its objects must not point at it.
    global _server, _lock
    _server = None
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_forget_after_fork)
