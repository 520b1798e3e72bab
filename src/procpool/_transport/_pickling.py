"""Pickling policy: what crosses between processes, and how.

Plain data takes the standard pickler (fast); functions that workers can import travel by name;
anything else (lambdas, closures, ``__main__`` functions) goes by value through cloudpickle.
Exceptions travel with their formatted traceback, so the receiver can rebuild them or say what
they were. Import-light (stdlib and cloudpickle): workers import it.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import traceback
import types
import weakref
from collections.abc import Callable
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from .._errors import RemoteError, RemoteTraceback, SerializationError
from ._wire import Body

_PROTOCOL = pickle.HIGHEST_PROTOCOL

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
    if _is_plain_call(obj) or _is_plain(obj, _PLAIN_DEPTH):
        data = pickle.dumps(obj, protocol=_PROTOCOL)
    else:
        data = cloudpickle.dumps(obj, protocol=_PROTOCOL)
    return data


def _is_plain_call(obj: object) -> bool:
    """The common ``(args, kwargs)`` of a call with scalar arguments and no keywords, checked
    without the recursion of `_is_plain` (each submit of a tiny task pays for this)."""
    if type(obj) is not tuple or len(obj) != 2:
        return False
    args, kwargs = obj
    if type(args) is not tuple or kwargs != {} or type(kwargs) is not dict:
        return False
    plain = _PLAIN_TYPES
    return all(type(arg) in plain for arg in args)


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
        except BaseException:  # SystemExit from a __reduce__ too: it would act on the parent
            exc = None
    if not isinstance(exc, Exception):
        exc = RemoteError(type_name, message, tb_text)
    exc.__cause__ = RemoteTraceback(tb_text)
    return exc  # type: ignore[no-any-return]
