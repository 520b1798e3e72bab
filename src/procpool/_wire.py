"""Wire format between the parent and a worker: length-prefixed frames and exception transport.

Every frame is ``header + body``. The header carries the body length, the frame kind and the
task id, so the parent routes a frame to its task before decoding the body: a body that fails
to decode fails only its own task. Import-light (stdlib and cloudpickle): workers import it.
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import struct
import sys
import traceback
import types
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import cloudpickle  # type: ignore[import-untyped]

from ._errors import RemoteError, RemoteTraceback, SerializationError

HEADER = struct.Struct("<QBQ")  # body length, kind, task id
CALL_PREFIX = struct.Struct("<QQQ")  # function id, function id the worker may forget, len(function)
CREDIT_BODY = struct.Struct("<I")  # how many more stream items the worker may send
TIMING = struct.Struct("<dd")  # leads a RESULT or ERROR body: when the task started and finished (monotonic)
PROGRESS_BODY = struct.Struct("<dd")  # done, total (NaN: unknown)
STARTED = struct.Struct("<Q")  # in memory shared with the parent: the task the worker began last

# Parent -> worker.
CALL = 1
STREAM = 6  # like CALL, for a function that returns an iterator: its items come back one by one
CREDIT = 7
CLOSE = 8  # stop the stream: close the generator in the worker
CANCEL = 10  # skip this task if it has not started
# Worker -> parent.
READY = 2
INIT_FAILED = 3
RESULT = 4  # also ends a stream
ERROR = 5
ITEM = 9
CANCELLED = 11  # the task was skipped, as asked
# Worker -> parent, reports besides results, at any time (task id 0: between tasks).
LOG = 12  # a logging record
OUTPUT = 13  # text written to sys.stdout or sys.stderr: one byte for which, then UTF-8
PROGRESS = 14  # `report_progress` from the running task
REPORTS = frozenset({LOG, OUTPUT, PROGRESS})

_SMALL_FRAME = 64 * 1024
JOIN_LIMIT = 256 * 1024  # frames up to this size in all are joined and written in one system call
_READ_SIZE = 256 * 1024
_PROTOCOL = pickle.HIGHEST_PROTOCOL


Body = bytes | bytearray | memoryview  # a large frame's body stays in the buffer it was read into


class Frame(NamedTuple):
    kind: int
    task_id: int
    body: Body


_PLAIN_TYPES = frozenset({int, float, complex, str, bytes, bytearray, bool, type(None)})
_PLAIN_DEPTH = 4
_by_reference: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def dumps(obj: object) -> bytes:
    """Pickle with cloudpickle, so lambdas, closures and ``__main__`` functions travel by value.

    Plain data (numbers, strings, bytes, numpy arrays of numbers, and tuples, lists and dicts of
    them) holds nothing cloudpickle treats differently, so it takes the standard pickler, which is
    several times faster for the small arguments of tiny tasks and for map's large chunks.
    """
    data: bytes
    if _is_plain(obj, _PLAIN_DEPTH):
        data = pickle.dumps(obj, protocol=_PROTOCOL)
    else:
        data = cloudpickle.dumps(obj, protocol=_PROTOCOL)
    return data


def _is_plain(obj: object, depth: int) -> bool:
    kind = type(obj)
    if kind in _PLAIN_TYPES:
        return True
    if kind.__module__ == "numpy" and kind.__name__ == "ndarray":
        return not obj.dtype.hasobject  # type: ignore[attr-defined]
    if not depth:
        return False
    if kind is tuple or kind is list:
        items: Any = obj
        return all(_is_plain(item, depth - 1) for item in items)
    if kind is dict:
        mapping: Any = obj
        return all(type(key) in _PLAIN_TYPES and _is_plain(value, depth - 1) for key, value in mapping.items())
    return False


def dumps_function(fn: object) -> bytes:
    """Pickle a function to send to workers.

    A function that workers can import by name (defined at the top level of an importable module
    other than ``__main__``) pickles as that name: the bytes never change, so they are computed
    once per function. Anything else goes by value through cloudpickle, every time, since the
    values it captures (globals, closure cells) may have changed since the last call.
    """
    try:
        return _by_reference[fn]
    except (KeyError, TypeError):
        pass
    if not _importable_by_name(fn):
        return dumps(fn)
    data = pickle.dumps(fn, protocol=_PROTOCOL)
    with contextlib.suppress(TypeError):  # not weakly referenceable: not cached
        _by_reference[fn] = data
    return data


def _importable_by_name(fn: object) -> bool:
    if not isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, type)):
        return False
    module_name = getattr(fn, "__module__", None)
    if module_name is None or module_name == "__main__" or module_name not in sys.modules:
        return False
    by_value = cloudpickle.list_registry_pickle_by_value()
    if any(module_name == name or module_name.startswith(name + ".") for name in by_value):
        return False
    found: Any = sys.modules[module_name]
    for part in fn.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is fn


def dumps_for_transport(obj: object, what: str, pickler: Callable[[object], bytes] = dumps) -> bytes:
    """Pickle ``obj`` (with `dumps` by default); a failure becomes a `SerializationError` that
    says what could not travel."""
    try:
        return pickler(obj)
    except Exception as exc:
        raise SerializationError(
            f"{what} cannot be pickled to cross to another process ({type(exc).__name__}: {exc}); "
            "pass plain data, or objects that cloudpickle supports"
        ) from exc


def encode(kind: int, task_id: int, *parts: bytes) -> list[bytes]:
    """A frame as a list of buffers; small frames are joined so they go out in one system call."""
    size = sum(len(p) for p in parts)
    header = HEADER.pack(size, kind, task_id)
    if size <= _SMALL_FRAME:
        return [b"".join((header, *parts))]
    return [header, *parts]


def encode_call(kind: int, task_id: int, fn_id: int, forget_id: int, fn_bytes: bytes, args_bytes: bytes) -> list[bytes]:
    """A CALL or STREAM frame. ``fn_bytes`` is empty when the worker already caches ``fn_id``."""
    prefix = CALL_PREFIX.pack(fn_id, forget_id, len(fn_bytes))
    return encode(kind, task_id, prefix, fn_bytes, args_bytes)


def encode_credit(task_id: int, count: int) -> list[bytes]:
    return encode(CREDIT, task_id, CREDIT_BODY.pack(count))


class FrameBuffer:
    """Reads frames from a channel, many at a time.

    Small frames come in large reads and are split out; the body of a large frame is read
    straight into a buffer of its size, so a large payload is copied once on its way in.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._large: bytearray | None = None  # the body being read straight in
        self._large_filled = 0
        self._large_header = (0, 0)  # its kind and task id

    def read(self, sock: socket.socket) -> list[Frame] | None:
        """The frames completed by one read (maybe none yet); None at end of file.

        Raises:
            BlockingIOError: a non-blocking ``sock`` has nothing to read.
        """
        large = self._large
        if large is not None:
            with memoryview(large) as view:
                count = sock.recv_into(view[self._large_filled :])
            if not count:
                return None
            self._large_filled += count
            if self._large_filled < len(large):
                return []
            self._large = None
            return [Frame(*self._large_header, large)]
        data = sock.recv(_READ_SIZE)
        if not data:
            return None
        return self._split(data)

    def _split(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames = []
        while len(buffer) >= HEADER.size:
            size, kind, task_id = HEADER.unpack_from(buffer)
            end = HEADER.size + size
            if len(buffer) < end:
                if size > _READ_SIZE:  # large: read the rest of its body straight into place
                    self._large = bytearray(size)
                    self._large[: len(buffer) - HEADER.size] = memoryview(buffer)[HEADER.size :]
                    self._large_filled = len(buffer) - HEADER.size
                    self._large_header = (kind, task_id)
                    buffer.clear()
                break
            with memoryview(buffer) as view:
                body = bytes(view[HEADER.size : end])
            del buffer[:end]  # bytearray drops a prefix without moving the rest
            frames.append(Frame(kind, task_id, body))
        return frames


def pack_exception(exc: BaseException) -> bytes:
    """Everything the parent needs to re-raise ``exc``: the pickled exception when it pickles,
    and its type name, message and formatted traceback in any case."""
    try:
        exc_bytes: bytes | None = dumps(exc)
    except Exception:
        exc_bytes = None
    try:
        message = str(exc)
    except Exception:
        message = "<str() of the exception failed>"
    cls = type(exc)
    type_name = f"{cls.__module__}.{cls.__qualname__}"
    tb_text = "".join(traceback.format_exception(exc))
    return pickle.dumps((exc_bytes, type_name, message, tb_text), protocol=_PROTOCOL)


def unpack_exception(body: Body) -> BaseException:
    """Rebuild an exception packed by `pack_exception`, with the child's traceback as its cause.

    Only `Exception` subclasses are rebuilt as themselves: a child's `KeyboardInterrupt` or
    `GeneratorExit` re-raised in the parent would act on the parent, so it arrives as `RemoteError`.
    """
    exc_bytes, type_name, message, tb_text = pickle.loads(body)
    exc: Any = None
    if exc_bytes is not None:
        try:
            exc = pickle.loads(exc_bytes)
        except Exception:
            exc = None
    if not isinstance(exc, Exception):
        exc = RemoteError(type_name, message, tb_text)
    exc.__cause__ = RemoteTraceback(tb_text)
    return exc  # type: ignore[no-any-return]
