"""Transport: the frames between the parent and a worker (`wire`), the pickling policy, and large
buffers out of band."""

from . import _wire as wire
from ._buffers import MINIMUM_THRESHOLD as MINIMUM_THRESHOLD
from ._buffers import MemoryFiles as MemoryFiles
from ._buffers import Received as Received
from ._buffers import Spilled as Spilled
from ._buffers import loads as loads
from ._buffers import send_descriptor as send_descriptor
from ._pickling import Description as Description
from ._pickling import dumps as dumps
from ._pickling import dumps_call_for_transport as dumps_call_for_transport
from ._pickling import dumps_for_transport as dumps_for_transport
from ._pickling import dumps_function as dumps_function
from ._pickling import dumps_with_buffers_for_transport as dumps_with_buffers_for_transport
from ._pickling import pack_exception as pack_exception
from ._pickling import pickled_by_reference as pickled_by_reference
from ._pickling import unpack_exception as unpack_exception
from ._wire import Body as Body
from ._wire import Frame as Frame

__all__ = (
    "MINIMUM_THRESHOLD",
    "Body",
    "Description",
    "Frame",
    "MemoryFiles",
    "Received",
    "Spilled",
    "dumps",
    "dumps_call_for_transport",
    "dumps_for_transport",
    "dumps_function",
    "dumps_with_buffers_for_transport",
    "loads",
    "pack_exception",
    "pickled_by_reference",
    "send_descriptor",
    "unpack_exception",
    "wire",
)
