"""Pickling policy: what crosses between processes, and how.

Plain data takes the standard pickler (fast). Functions and classes that workers can import travel
by name, as with the standard library: those of importable modules, and those defined at the top
level of the main script, which local workers import as multiprocessing's do. Anything else
(lambdas, closures, functions from a notebook cell, ``-c`` or a REPL) goes by value through
cloudpickle. Exceptions travel with their formatted traceback, so the receiver can rebuild them or
say what they were. Import-light (stdlib and cloudpickle): workers import it.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import logging
import pickle
import sys
import traceback
import types
import weakref
from collections import ChainMap
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NoReturn

import cloudpickle  # type: ignore[import-untyped]

from .._errors import RemoteError, RemoteTraceback, SerializationError
from ._buffers import MemoryFiles, Spill, Spilled
from ._wire import Body

_PROTOCOL = pickle.HIGHEST_PROTOCOL

_PLAIN_TYPES = frozenset({int, float, complex, str, bytes, bytearray, bool, type(None), range})
_SCALARS = _PLAIN_TYPES - {bytes, bytearray}  # plain types that hold no buffer
_PLAIN_DEPTH = 4
# Longer lists and tuples are not checked: checking costs about 25 ns an item, more than pickling
# a number, while cloudpickle's pickler costs only a few microseconds more per pickle (it consults
# its own hooks for no number, string or container).
_PLAIN_CHECKED_ITEMS = 100
_by_reference: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()
_told_by_value: weakref.WeakSet[Any] = weakref.WeakSet()
_log = logging.getLogger("procpool")
Description = str | Callable[[], str]  # what an object to pickle is, for an error: words, or a function that gives them


def dumps(obj: object, *, main_by_reference: bool = True) -> bytes:
    """Pickle with cloudpickle, so lambdas and closures travel by value.

    Plain data (numbers, strings, bytes, numpy arrays of numbers, and short tuples, lists and
    dicts of them) holds nothing cloudpickle treats differently, so it takes the standard pickler,
    which is several times faster for the small arguments and results of tiny tasks.

    With ``main_by_reference`` (for workers that import the main script, as local ones do), the
    main script's top-level functions and classes travel by name, as everywhere else; without it
    (a Dask cluster's workers), by value.
    """
    data: bytes
    if _is_plain_call(obj) or _is_plain(obj, _PLAIN_DEPTH):
        data = pickle.dumps(obj, protocol=_PROTOCOL)
    else:
        with io.BytesIO() as file:
            (_Pickler if main_by_reference else _PicklerMainByValue)(file, protocol=_PROTOCOL).dump(obj)
            data = file.getvalue()
    return data


def dumps_with_buffers(
    obj: object, threshold: int, files: MemoryFiles | None = None, *, main_by_reference: bool = True
) -> tuple[bytes, Spilled | None]:
    """`dumps`, with the buffers of ``threshold`` bytes or more (numpy arrays', ``bytes``,
    ``bytearray``, ``memoryview``, anything pickled as a `pickle.PickleBuffer`) taken out of band
    into a memory file (one of ``files``, if given; see `_buffers`); None when there is none.

    The pickler cannot be asked about ``bytes`` and ``bytearray`` but by ``persistent_id``, which
    costs a call per object. So the pickle is first made without it, into a file that stops it at
    the first large write (a payload of 64 KiB or more goes to the file alone): only a pickle
    that holds one is made again with ``persistent_id``. Plain data with no large buffer (tiny
    results) skips both; the plain call of a tiny task is its caller's to spot first
    (`dumps_with_buffers_for_transport`), so that it costs one check, not two.
    """
    if _is_plain(obj, _PLAIN_DEPTH, threshold):
        return pickle.dumps(obj, protocol=_PROTOCOL), None
    plain = _is_plain(obj, _PLAIN_DEPTH)
    pickler = pickle.Pickler if plain else _Pickler if main_by_reference else _PicklerMainByValue
    spill = Spill(threshold)
    probe = _StopAtLarge(threshold)
    try:
        pickler(probe, protocol=_PROTOCOL, buffer_callback=spill.take).dump(obj)
        data = b"".join(probe.parts)
    except _LargeWrite:
        spill = Spill(threshold)
        with io.BytesIO() as file:
            spilling = pickler(file, protocol=_PROTOCOL, buffer_callback=spill.take)
            spilling.persistent_id = spill.persistent_id  # type: ignore[method-assign]  # read per pickler
            spilling.dump(obj)
            data = file.getvalue()
    return data, spill.to_file(files)


class _LargeWrite(Exception):
    pass


class _StopAtLarge:
    """A pickler's file that raises `_LargeWrite` when a payload of ``threshold`` bytes or more
    comes (a ``bytes``, ``bytearray``, or an encoded ``str``, which is no buffer but costs only
    the second pickling)."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.parts: list[Any] = []

    def write(self, data: Any) -> None:
        with memoryview(data) as view:
            if view.nbytes >= self.threshold:
                raise _LargeWrite
        self.parts.append(data)


def _memoryview(buffer: Any, format: str, shape: tuple[int, ...]) -> memoryview:
    view: memoryview = memoryview(buffer)
    if format == "B" and len(shape) == 1:
        return view
    raw: Any = view.cast("B")
    shaped: memoryview = raw.cast(format, shape)
    return shaped


def _reduce_memoryview(view: memoryview) -> tuple[Any, ...]:
    """A memoryview travels as its bytes (a buffer: out of band when large), its format and shape;
    the receiver's is writable if this one is. Formats that ``cast`` cannot rebuild travel as bytes."""
    format, shape = view.format, view.shape
    try:
        memoryview(bytes(view.itemsize)).cast(format)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        format, shape = "B", (view.nbytes,)
    if not view.c_contiguous:
        data = view.tobytes()
        return _memoryview, (data if view.readonly else bytearray(data), format, shape)
    return _memoryview, (pickle.PickleBuffer(view), format, shape)


def _refuse_open_file(file: io.TextIOWrapper) -> NoReturn:
    raise pickle.PicklingError(
        f"an open file ({file.name!r}) does not cross to another process: pass its path, and open it in the task"
    )


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle with two rules of procpool's:

    - The functions and classes that workers find in their import of the main script go by name,
      so they use the worker's module globals (what its initializer set) and its tracebacks show
      the script's lines, as with the standard library (`_PicklerMainByValue` does not).
    - An open text file is refused, as every other open file is, rather than sent as a copy of its
      content (cloudpickle's rule for files open for reading), which a task would read believing
      it reads the file.
    """

    dispatch_table: ClassVar[Mapping[type, Callable[..., Any]]] = ChainMap(
        {io.TextIOWrapper: _refuse_open_file, memoryview: _reduce_memoryview}, cloudpickle.Pickler.dispatch_table
    )
    main_by_reference: ClassVar[bool] = True

    def reducer_override(self, obj: object) -> Any:
        kind = type(obj)
        if (
            self.main_by_reference
            and (kind is types.FunctionType or issubclass(kind, type))
            and _defined_in_imported_main(obj)
        ):
            return NotImplemented  # the standard pickler's way: by name
        return super().reducer_override(obj)


class _PicklerMainByValue(_Pickler):
    """For workers that do not import the main script: its functions and classes go by value."""

    main_by_reference = False


def _is_plain_call(obj: object, threshold: int | None = None) -> bool:
    """The common ``(args, kwargs)`` of a call with scalar arguments and no keywords, checked
    without the recursion of `_is_plain` (each submit of a tiny task pays for this); with
    ``threshold``, no ``bytes`` or ``bytearray`` argument as large."""
    if type(obj) is not tuple or len(obj) != 2:
        return False
    args, kwargs = obj
    if type(args) is not tuple or type(kwargs) is not dict or kwargs:  # no keywords: no dict made to compare
        return False
    if threshold is None:
        return _PLAIN_TYPES.issuperset(map(type, args))
    if _SCALARS.issuperset(map(type, args)):
        return True
    return all(type(arg) in _PLAIN_TYPES and _is_plain(arg, 0, threshold) for arg in args)


def _is_plain(obj: object, depth: int, threshold: int | None = None) -> bool:
    """Whether ``obj`` is plain data (see `dumps`); with ``threshold``, with no buffer as large."""
    kind = type(obj)
    if kind in _PLAIN_TYPES:
        return threshold is None or (kind is not bytes and kind is not bytearray) or len(obj) < threshold  # type: ignore[arg-type]
    if kind.__module__ == "numpy" and kind.__name__ == "ndarray":
        array: Any = obj
        return not array.dtype.hasobject and (threshold is None or array.nbytes < threshold)
    if not depth:
        return False
    if kind is tuple or kind is list:
        items: Any = obj
        if len(items) > _PLAIN_CHECKED_ITEMS:
            return False
        # A loop in C first, before the recursion
        return (_PLAIN_TYPES if threshold is None else _SCALARS).issuperset(map(type, items)) or all(
            _is_plain(item, depth - 1, threshold) for item in items
        )
    if kind is dict:
        mapping: Any = obj
        return all(
            type(key) in _PLAIN_TYPES and _is_plain(value, depth - 1, threshold) for key, value in mapping.items()
        )
    return False


def dumps_function(fn: object, *, main_by_reference: bool = True) -> bytes:
    """Pickle a function to send to workers.

    A function that workers can import by name (defined at the top level of an importable module,
    or of the main script with ``main_by_reference``) pickles as that name: the bytes never change,
    so they are computed once per function. Anything else goes by value through cloudpickle, every
    time, since the values it captures (globals, closure cells) may have changed since the last
    call. The ``procpool`` logger says at DEBUG level, once per function, which way it went.
    """
    try:
        data = _by_reference[fn]
    except (KeyError, TypeError):
        pass
    else:
        if main_by_reference or getattr(fn, "__module__", None) != "__main__":
            return data
    if not _importable_by_name(fn, main_by_reference):
        if _log.isEnabledFor(logging.DEBUG) and fn not in _told_by_value:
            _log.debug("%s travels by value (cloudpickle): %s", _name_of(fn), _why_by_value(fn, main_by_reference))
            with contextlib.suppress(TypeError):  # not weakly referenceable: told every time
                _told_by_value.add(fn)
        return dumps(fn, main_by_reference=main_by_reference)
    data = pickle.dumps(fn, protocol=_PROTOCOL)
    if _log.isEnabledFor(logging.DEBUG):  # a builtin, not cached, comes here at every call
        _log.debug("%s travels by reference: workers import it by that name", _name_of(fn))
    with contextlib.suppress(TypeError):  # not weakly referenceable: not cached
        _by_reference[fn] = data
    return data


def pickled_by_reference(fn: object, data: bytes) -> bool:
    """Whether ``data``, from `dumps_function`, is ``fn`` by name: bytes that never change."""
    try:
        return _by_reference.get(fn) is data
    except TypeError:  # not weakly referenceable: never cached
        return False


def dumps_for_transport(
    obj: object, what: Description, pickler: Callable[..., bytes] = dumps, *, main_by_reference: bool = True
) -> bytes:
    """Pickle ``obj`` with ``pickler`` (`dumps` or `dumps_function`) and ``main_by_reference``;
    a failure becomes a `SerializationError` that says what could not travel (``what``, or what
    it returns: hot paths pass a function, to format the words only on failure)."""
    try:
        return pickler(obj, main_by_reference=main_by_reference)
    except Exception as exc:
        raise _cannot_pickle(what, exc) from exc


def dumps_with_buffers_for_transport(
    obj: object, what: Description, threshold: int, files: MemoryFiles | None = None, *, main_by_reference: bool = True
) -> tuple[bytes, Spilled | None]:
    """`dumps_with_buffers`, whose failure becomes a `SerializationError` as in `dumps_for_transport`."""
    try:
        if _is_plain_call(obj, threshold):  # a tiny task's call, in one Python call less
            return pickle.dumps(obj, protocol=_PROTOCOL), None
        return dumps_with_buffers(obj, threshold, files, main_by_reference=main_by_reference)
    except Exception as exc:
        raise _cannot_pickle(what, exc) from exc


def dumps_call_for_transport(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    what: Description,
    files: MemoryFiles | None,
    main_by_reference: bool,
) -> tuple[bytes, Spilled | None]:
    """A call's ``(args, kwargs)`` pickled as `dumps_for_transport` does or, given memory ``files``,
    as `dumps_with_buffers_for_transport` does with their threshold. A tiny task's call (scalar
    arguments, no keywords) is checked and pickled here at once: each submit pays for this."""
    call = (args, kwargs)
    if not kwargs and _SCALARS.issuperset(map(type, args)):
        return pickle.dumps(call, _PROTOCOL), None
    if files is None:
        return dumps_for_transport(call, what, main_by_reference=main_by_reference), None
    return dumps_with_buffers_for_transport(call, what, files.threshold, files, main_by_reference=main_by_reference)


def _cannot_pickle(what: Description, exc: Exception) -> SerializationError:
    if not isinstance(what, str):
        what = what()
    return SerializationError(
        f"{what} cannot be pickled to cross to another process ({type(exc).__name__}: {exc}); "
        "pass plain data, or objects that cloudpickle supports"
    )


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
    elif isinstance(exc, StopIteration) and exc.args:
        # Its value is no attribute in __dict__: tblib's pickling of exceptions, which importing
        # Dask's distributed installs in every process, rebuilds it without.
        exc.value = exc.args[0]
    exc.__cause__ = RemoteTraceback(tb_text)
    return exc  # type: ignore[no-any-return]


def _name_of(fn: object) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _why_by_value(fn: object, main_by_reference: bool) -> str:
    if getattr(fn, "__module__", None) != "__main__":
        return "it is not a top-level function of an importable module (a lambda, a closure, a method...)"
    if not main_by_reference:
        return "this pool's workers do not import the main script"
    if _imported_main() is None:
        return "the main module is not a script that workers import (a notebook, a REPL, -c, a package's __main__)"
    return "it is not defined at the top level of the main script (a lambda, a closure, under the __main__ guard...)"


def _importable_by_name(fn: object, main_by_reference: bool) -> bool:
    if not isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, type)):
        return False
    module_name = getattr(fn, "__module__", None)
    if module_name == "__main__":
        return main_by_reference and _defined_in_imported_main(fn)
    if module_name is None or module_name not in sys.modules:
        return False
    by_value = cloudpickle.list_registry_pickle_by_value()
    if any(module_name == name or module_name.startswith(name + ".") for name in by_value):
        return False
    return _found_by_name(sys.modules[module_name], fn)


def _found_by_name(module: object, obj: Any) -> bool:
    found: Any = module
    for part in obj.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is obj


def _defined_in_imported_main(obj: Any) -> bool:
    """Whether a worker's import of the main script binds ``obj``'s qualified name to its own copy
    of ``obj``: a ``def`` or ``class`` at the script's top level (not under the ``__main__`` guard,
    which a worker's import skips), still bound to that name here."""
    if getattr(obj, "__module__", None) != "__main__":
        return False
    main = _imported_main()
    if main is None:
        return False
    module, path = main
    if not _found_by_name(module, obj):
        return False
    outer, _, inner = obj.__qualname__.partition(".")
    lines = _top_level_definitions(path).get(outer)
    if lines is None:
        return False
    if inner or isinstance(obj, type):  # a class, or a method or class inside a top-level class
        return lines == _CLASS
    if lines == _CLASS:
        return False
    code = getattr(obj, "__code__", None)
    if code is None or code.co_filename != path or hasattr(obj, "__wrapped__"):
        return True  # a decorator's wrapper: bound to the name by the decorated definition
    return code.co_firstlineno in lines


def _imported_main() -> tuple[types.ModuleType, str] | None:
    """The main module and its source file when workers import it, as multiprocessing's spawn
    and forkserver children do: a script run by path, or a module run with ``-m`` (not a
    package's ``__main__``, which they skip). None for a notebook, a REPL or ``-c``."""
    module = sys.modules.get("__main__")
    spec = getattr(module, "__spec__", None)
    if spec is not None:
        name = getattr(spec, "name", "__main__")
        path = getattr(spec, "origin", None) if name != "__main__" and not name.endswith(".__main__") else None
    else:
        path = getattr(module, "__file__", None)
    if module is None or not isinstance(path, str) or not path.endswith(".py"):
        return None
    return module, path


_CLASS: frozenset[int] = frozenset()


@functools.cache
def _top_level_definitions(path: str) -> dict[str, frozenset[int]]:
    """The names bound by a top-level ``def`` (with the first line of each definition, decorators
    included) or ``class`` (`_CLASS`) in the script at ``path``, as workers import it: read once,
    since the forkserver keeps the script as it was when it started."""
    try:
        with open(path, "rb") as file:
            tree = ast.parse(file.read(), path)
    except (OSError, SyntaxError, ValueError):
        return {}
    definitions: dict[str, frozenset[int]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            definitions[node.name] = definitions.get(node.name, frozenset()) | {first}
        elif isinstance(node, ast.ClassDef):
            definitions[node.name] = _CLASS
    return definitions
