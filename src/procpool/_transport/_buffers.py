"""Large pickle buffers out of band: in a memory file, whose descriptor crosses on its own socket.

Pickle protocol 5 lets an object give its data as a buffer (`pickle.PickleBuffer`): numpy arrays
do, and so does a ``memoryview`` (see `_pickling`); ``bytes`` and ``bytearray``, which the pickler
writes itself, are taken by ``persistent_id``. Those of at least a threshold (`Spill`) are written
into one memory file per frame (`Spilled`: a memfd, or an unlinked 0600 file; never a path another
process can open), each at an offset aligned for SIMD loads; the frame carries their table, and the
file's descriptor goes ahead of the frame over the channel's companion socket (`send_descriptor`).

The receiver (`Received`) maps the file privately (copy on write) for the buffers a pickle takes
as they are: numpy arrays and memoryviews are views of the mapping (no copy; writable where the
sender's were, and a write stays in the receiver). ``bytes`` and ``bytearray`` are read with pread
into a new object, their one copy, without mapping the file. The descriptor is closed as soon as
the pickle is loaded; the mapping lives as long as a view of it. A pool reuses its calls' memory
files once their workers map them no more (`MemoryFiles`). Stdlib only: workers import it.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import mmap
import os
import pickle
import socket
import struct
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from .._descriptors import filled, read_into, shared_memory

Body = bytes | bytearray | memoryview  # as `_wire.Body`

MINIMUM_THRESHOLD = 64 * 1024  # the pickler writes a payload this large on its own (see `_pickling`)
VIEW, BYTES, BYTEARRAY = 0, 1, 2  # what the receiver makes of a buffer: a view, or a copy of that type
_COUNT = struct.Struct("<I")
_ENTRY = struct.Struct("<BQ")  # kind, size
_ALIGN = 64
KEEP_AT_MOST = 256 * 1024 * 1024  # bytes of a memory file kept for reuse (`MemoryFiles`)
_NAME = "procpool-buffers"  # how the memory files show in /proc/PID/fd and /proc/PID/maps
_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
_MAP_FIXED = getattr(mmap, "MAP_FIXED", 0x10)  # the same on Linux and the BSDs; named from Python 3.12 on
_MADV_HUGEPAGE = 14  # Linux
_MOST_COPY_THREADS = 4  # beyond a few, the memory's bandwidth bounds a copy, not the cores
_COPY_SHARE = 4 * 1024 * 1024  # the least a copying thread takes: its start and join cost some 70 µs
_PYBUF_SIMPLE = 0
_PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc_mmap = _libc.mmap
_libc_mmap.restype = ctypes.c_void_p
_libc_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
# Function objects of our own (indexing makes new ones), whose types no other code changes.
_get_buffer = ctypes.pythonapi["PyObject_GetBuffer"]
_get_buffer.argtypes = (ctypes.py_object, ctypes.c_void_p, ctypes.c_int)
_release_buffer = ctypes.pythonapi["PyBuffer_Release"]
_release_buffer.argtypes = (ctypes.c_void_p,)
_release_buffer.restype = None
# A new bytes or bytearray object whose content is filled in here, before anything else sees it.
_NEW = {
    bytes: (ctypes.pythonapi.PyBytes_FromStringAndSize, ctypes.pythonapi.PyBytes_AsString),
    bytearray: (ctypes.pythonapi.PyByteArray_FromStringAndSize, ctypes.pythonapi.PyByteArray_AsString),
}
for _make, _address in _NEW.values():
    _make.restype = ctypes.py_object
    _make.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    _address.restype = ctypes.c_void_p
    _address.argtypes = (ctypes.py_object,)


class Spill:
    """Collects the buffers of one pickle that go out of band: those of ``threshold`` bytes or more.

    ``take`` is the pickler's ``buffer_callback``; ``persistent_id`` takes large ``bytes`` and
    ``bytearray`` objects (each once, however often the pickle refers to it)."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._buffers: list[memoryview] = []
        self._kinds: list[int] = []
        self._taken: dict[int, int] = {}  # id() of a bytes object taken, to its index

    def take(self, buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < self.threshold:
            return True  # in band
        self._buffers.append(raw)
        self._kinds.append(VIEW)
        return False

    def persistent_id(self, obj: object) -> int | None:
        kind = type(obj)
        if (kind is not bytes and kind is not bytearray) or len(obj) < self.threshold:  # type: ignore[arg-type]
            return None
        index = self._taken.get(id(obj))
        if index is None:
            index = self._taken[id(obj)] = len(self._buffers)
            self._buffers.append(memoryview(obj))  # type: ignore[arg-type]
            self._kinds.append(BYTES if kind is bytes else BYTEARRAY)
        return index

    def to_file(self, files: MemoryFiles | None = None) -> Spilled | None:
        """The buffers taken, written into a memory file (one of ``files``, if given); None if
        none was taken."""
        if not self._buffers:
            return None
        sizes = [buffer.nbytes for buffer in self._buffers]
        offsets, size = _layout(sizes)
        mapping = None
        try:
            if files is None:
                fd = filled(shared_memory(size, _NAME), self._buffers, offsets)
            else:
                fd, mapping = files.filled(size, self._buffers, offsets)
        finally:
            for buffer in self._buffers:
                buffer.release()  # a bytearray can be resized again
            self._buffers.clear()
            self._taken.clear()
        table = _COUNT.pack(len(sizes)) + b"".join(map(_ENTRY.pack, self._kinds, sizes))
        return Spilled(fd, table, size, files, mapping)


class MemoryFiles:
    """A pool's memory files for its calls' large buffers, reused: writing into pages a file
    already has costs a copy, into a new file's also their allocation (then their release), which
    takes longer than the copy. Each file kept stays mapped here (shared, writable), and buffers
    are copied into the mapping, by several threads for a large one (`copy_into`): on Linux
    that takes two thirds of the time pwrite takes with one thread, and pwrite gains nothing from
    more threads. The pages of the files kept (at most ``keep``, none larger than
    `KEEP_AT_MOST`) thus count in this process's resident memory (as shared memory), as they
    would count in any process's. A file comes back only once the worker that received it has
    said it maps it no more (see `Spilled.recycle`); the files kept are closed with the pool.

    Attributes:
        threshold: buffers of this many bytes or more go out of band (`Spill`).
    """

    def __init__(self, threshold: int, keep: int, cpus: int) -> None:
        self.threshold = threshold
        self._keep = keep
        self._copy_threads = min(_MOST_COPY_THREADS, cpus)  # ``cpus``: those this process may use
        self._files: list[tuple[int, mmap.mmap]] = []
        self._closed = False
        self._lock = threading.Lock()  # the executor view pickles in its callers' threads

    def filled(self, size: int, buffers: list[memoryview], offsets: list[int]) -> tuple[int, mmap.mmap]:
        """A memory file of ``size`` bytes, a waiting one or a new one, with each of ``buffers``
        written at its offset; and its mapping here, to come back with it (`give_back`)."""
        with self._lock:
            fd, mapping = self._files.pop() if self._files else (-1, None)
        try:
            if mapping is None or len(mapping) != size:
                if mapping is not None:
                    mapping.close()
                    os.ftruncate(fd, size)  # a smaller size frees the pages beyond it
                else:
                    fd = shared_memory(size, _NAME)
                mapping = _mapped(fd, size, mmap.MAP_SHARED)
            copy_into(mapping, buffers, offsets, self._copy_threads)
        except BaseException:
            if mapping is not None:
                with contextlib.suppress(BufferError):  # a copying thread still has it: unmapped when done
                    mapping.close()
            if fd >= 0:
                os.close(fd)
            raise
        return fd, mapping

    def give_back(self, fd: int, mapping: mmap.mmap) -> None:
        with self._lock:
            if not self._closed and len(self._files) < self._keep and len(mapping) <= KEEP_AT_MOST:
                self._files.append((fd, mapping))
                return
        mapping.close()
        os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            files, self._files = self._files, []
        for fd, mapping in files:
            mapping.close()
            os.close(fd)

    def __del__(self) -> None:  # a pool abandoned with its event loop gone
        self.close()


class Spilled:
    """A pickle's out-of-band buffers in a memory file, ready to go with a frame: the descriptor,
    open until `close` or `recycle` (the frame may be sent again: a task requeued after its worker
    died), the table the frame carries, and the size of the file."""

    __slots__ = ("_files", "_mapping", "fd", "size", "table")

    def __init__(
        self, fd: int, table: bytes, size: int, files: MemoryFiles | None = None, mapping: mmap.mmap | None = None
    ) -> None:
        self.fd = fd
        self.table = table
        self.size = size
        self._files = files
        self._mapping = mapping  # the sender's own, kept with the file by ``files``

    def close(self) -> None:
        if self._mapping is not None:
            mapping, self._mapping = self._mapping, None
            mapping.close()
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def recycle(self) -> None:
        """Done with, and mapped by no other process: the file goes back to its `MemoryFiles`."""
        if self.fd >= 0 and self._files is not None and self._mapping is not None:
            fd, self.fd = self.fd, -1
            mapping, self._mapping = self._mapping, None
            self._files.give_back(fd, mapping)
        self.close()

    def __del__(self) -> None:  # dropped unsent (a pickle whose call never became a task)
        self.close()


class Received:
    """The out-of-band buffers that came with a frame: its memory file, open until the pickle that
    refers to them is loaded (`loads`), or the frame is dropped."""

    __slots__ = ("_copies", "_entries", "_fd", "_mapped", "_mapping", "_size")

    def __init__(self, fd: int, kinds: list[int], sizes: list[int]) -> None:
        offsets, self._size = _layout(sizes)
        self._fd = fd
        self._entries = list(zip(kinds, offsets, sizes, strict=True))
        self._mapping: memoryview | None = None
        self._mapped: weakref.ref[mmap.mmap] | None = None  # alive as long as a view of it
        self._copies: dict[int, bytes | bytearray] = {}  # one object however often the pickle names it

    def loads(self, data: Body) -> Any:
        """Unpickle ``data`` with these buffers; the descriptor is closed, loaded or not."""
        try:
            unpickler = _Unpickler(io.BytesIO(data), buffers=self._views())
            unpickler.received = self
            return unpickler.load()
        finally:
            self.close()

    def _views(self) -> Iterator[memoryview]:
        for kind, offset, size in self._entries:
            if kind == VIEW:
                if self._mapping is None:
                    mapping = _map_privately(self._fd, self._size)
                    self._mapped = weakref.ref(mapping)
                    self._mapping = memoryview(mapping)
                yield self._mapping[offset : offset + size]
            # Any other kind is taken by `copy`, through persistent_load.

    def unmapped(self) -> bool:
        """Whether no view of the memory file is left here (its sender may then reuse it)."""
        return self._mapping is None and (self._mapped is None or self._mapped() is None)

    def copy(self, index: object) -> bytes | bytearray:
        """The ``bytes`` or ``bytearray`` at ``index`` in the table: read, never mapped."""
        if type(index) is not int or not 0 <= index < len(self._entries) or self._entries[index][0] == VIEW:
            raise pickle.UnpicklingError(f"no out-of-band bytes numbered {index!r} came with this pickle")
        copy = self._copies.get(index)
        if copy is None:
            copy = self._copies[index] = self._read(index)
        return copy

    def _read(self, index: int) -> bytes | bytearray:
        kind, offset, size = self._entries[index]
        data, address = _uninitialized(bytes if kind == BYTES else bytearray, size)
        read_into(self._fd, memoryview((ctypes.c_char * size).from_address(address)), offset)
        return data

    def close(self) -> None:
        self._mapping = None  # the views taken keep it mapped
        self._copies.clear()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __del__(self) -> None:  # its frame was dropped unread (a late result, a skipped task)
        self.close()


class _Unpickler(pickle.Unpickler):
    received: Received

    def persistent_load(self, pid: Any) -> Any:
        return self.received.copy(pid)


def _map_privately(fd: int, size: int) -> mmap.mmap:
    """The file ``fd`` mapped copy-on-write (`_mapped`). Its pages are not populated up front:
    that measured no faster for a 50 MB array read whole (D in benchmarks/), and costs a task
    that reads a little of a large argument the mapping of all of it."""
    return _mapped(fd, size, mmap.MAP_PRIVATE)


def _mapped(fd: int, size: int, flags: int) -> mmap.mmap:
    """The file ``fd`` mapped readable and writable, shared or private (``flags``), as an
    `mmap.mmap` that holds no descriptor.

    ``mmap.mmap(fd, ...)`` keeps a copy of ``fd`` open as long as the mapping (Python before 3.13
    cannot be told not to): one descriptor for each array a task keeps. So an anonymous mapping
    of the size is made, and the file mapped over it, in place (MAP_FIXED): the object unmaps
    that range when it dies, whatever is mapped there."""
    mapping = mmap.mmap(-1, size)
    anchor = ctypes.c_char.from_buffer(mapping)
    address = ctypes.addressof(anchor)
    del anchor  # it exports the buffer, which would keep the mapping from closing
    placed = _libc_mmap(address, size, mmap.PROT_READ | mmap.PROT_WRITE, flags | _MAP_FIXED, fd, 0)
    if placed != address:
        error = ctypes.get_errno()
        mapping.close()
        raise OSError(error, f"could not map a memory file: {os.strerror(error)}")
    return mapping


def copy_into(mapping: mmap.mmap, buffers: list[memoryview], offsets: list[int], threads: int) -> None:
    """Copy each of ``buffers`` (contiguous bytes) into ``mapping`` at its offset. memmove lets
    go of the GIL, and one thread's copy is bound by its core, not by the memory: a large copy is
    shared among up to ``threads`` threads, one per `_COPY_SHARE` bytes at least. Each thread
    holds views of its own of what it copies from and into, so that a caller interrupted
    meanwhile (a signal handler's exception can come at any point, in ``Thread.start`` too)
    cannot let go of memory still being copied: the mapping stays until the thread's view of it
    is gone, and ``close`` refuses until then."""
    destination = memoryview(mapping)
    pieces = [  # views of their own, never exported: their caller releases ``buffers``
        (destination[offset : offset + buffer.nbytes], buffer[:])
        for buffer, offset in zip(buffers, offsets, strict=True)
        if buffer.nbytes
    ]
    total = sum(len(source) for _, source in pieces)
    shares = _split(pieces, total, min(threads, total // _COPY_SHARE))
    helpers = []
    for share in shares[1:]:
        helper = threading.Thread(target=_copy, args=(share,), name="procpool-copy", daemon=True)
        try:
            helper.start()
        except RuntimeError:  # no thread to spare: this one copies what is left
            shares[0] += share
        else:
            helpers.append(helper)
    _copy(shares[0])
    for helper in helpers:
        helper.join()


def _copy(pieces: list[tuple[memoryview, memoryview]]) -> None:
    for destination, source in pieces:
        with _address_of(destination) as to, _address_of(source) as start:
            ctypes.memmove(to, start, len(source))


def _split(
    pieces: list[tuple[memoryview, memoryview]], total: int, count: int
) -> list[list[tuple[memoryview, memoryview]]]:
    """``pieces`` (destination, source), ``total`` bytes, cut into ``count`` lists of about the
    same size."""
    if count <= 1:
        return [pieces]
    share = -(-total // count)
    shares: list[list[tuple[memoryview, memoryview]]] = [[]]
    room = share
    for destination, source in pieces:
        while source:
            if not room:
                shares.append([])
                room = share
            taken = min(len(source), room)
            shares[-1].append((destination[:taken], source[:taken]))
            destination, source, room = destination[taken:], source[taken:], room - taken
    return shares


class _PyBuffer(ctypes.Structure):
    """CPython's ``Py_buffer``: its layout is the same in every Python 3 (and in the limited API
    from 3.11 on)."""

    _fields_ = (
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    )


@contextlib.contextmanager
def _address_of(buffer: memoryview) -> Iterator[int]:
    """The address of a contiguous buffer's first byte, read-only ones included (which ctypes'
    ``from_buffer`` refuses), held exported meanwhile: a bytearray cannot be resized under it."""
    view = _PyBuffer()
    _get_buffer(buffer, ctypes.byref(view), _PYBUF_SIMPLE)
    try:
        yield view.buf or 0
    finally:
        _release_buffer(ctypes.byref(view))


def _uninitialized(kind: type[bytes] | type[bytearray], size: int) -> tuple[bytes | bytearray, int]:
    """A new ``bytes`` or ``bytearray`` of ``size`` bytes left uninitialized, to be filled at once,
    and the address of its content, advised to take huge pages where the system allows
    (transparent huge pages in ``madvise`` mode): a large object then costs one page fault in 512
    where the C library's allocation costs one per 4 KiB page, which takes longer than the copy."""
    make, address_of = _NEW[kind]
    data: bytes | bytearray = make(None, size)
    address: int = address_of(data)
    start = -(-address // _PAGE) * _PAGE
    if address + size - start >= 2 * 1024 * 1024:
        _libc.madvise(start, (address + size - start) // _PAGE * _PAGE, _MADV_HUGEPAGE)  # advice: ignored if refused
    return data, address


def loads(data: Body, received: Received | None) -> Any:
    """Unpickle ``data``, with the out-of-band buffers that came with it (None: none)."""
    if received is None:
        return pickle.loads(data)
    return received.loads(data)


def _layout(sizes: list[int]) -> tuple[list[int], int]:
    """Where each buffer starts in the memory file, and the file's size."""
    offsets = []
    end = 0
    for size in sizes:
        start = -(-end // _ALIGN) * _ALIGN
        offsets.append(start)
        end = start + size
    return offsets, end


def table_size(body: Body) -> int:
    """The length of the table that leads ``body``."""
    (count,) = _COUNT.unpack_from(body)
    size: int = _COUNT.size + count * _ENTRY.size
    return size


def received(body: Body, fd: int) -> Received:
    """The buffers that the table leading ``body`` describes, in the memory file ``fd``."""
    (count,) = _COUNT.unpack_from(body)
    entries = [_ENTRY.unpack_from(body, _COUNT.size + i * _ENTRY.size) for i in range(count)]
    return Received(fd, [kind for kind, _ in entries], [size for _, size in entries])


def send_descriptor(sock: socket.socket, fd: int) -> None:
    """Send ``fd`` over ``sock`` (a blocking ``SOCK_SEQPACKET`` socket), ahead of its frame."""
    socket.send_fds(sock, [b"\0"], [fd])


def receive_descriptor(sock: socket.socket) -> int:
    """The next descriptor from ``sock``, which its frame's sender sent ahead of the frame.

    Raises:
        ConnectionResetError: none is there: the sender broke the protocol, or is gone.
    """
    try:
        _, fds, flags, _ = socket.recv_fds(sock, 1, 1, socket.MSG_DONTWAIT | _CLOEXEC)
    except BlockingIOError:
        fds, flags = [], 0
    if len(fds) != 1 or flags & socket.MSG_CTRUNC:
        for extra in fds:
            os.close(extra)
        raise ConnectionResetError("a frame's out-of-band buffers did not come with it")
    fd: int = fds[0]
    return fd
