"""Transport: the frames between the parent and a worker (`wire`) and the pickling policy."""

from . import _wire as wire
from ._pickling import dumps as dumps
from ._pickling import dumps_for_transport as dumps_for_transport
from ._pickling import dumps_function as dumps_function
from ._pickling import pack_exception as pack_exception
from ._pickling import unpack_exception as unpack_exception
from ._wire import Body as Body
from ._wire import Frame as Frame

__all__ = (
    "Body",
    "Frame",
    "dumps",
    "dumps_for_transport",
    "dumps_function",
    "pack_exception",
    "unpack_exception",
    "wire",
)
