"""The peers the harness compares: one module per library, each a `Peer` behind one registry.

Modules are imported lazily (`load`), so a cell's interpreter imports only the library it measures.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .base import Call as Call
from .base import Peer as Peer


@dataclass(frozen=True)
class PeerInfo:
    """How to find one peer, and where it can run.

    Attributes:
        label: the name shown in tables and plots.
        target: ``"module:Class"`` of its `Peer` class, relative to this package.
        loops: the event loops it runs on (``asyncio``, ``uvloop``, ``trio``).
        requires: the modules it needs (checked before planning a cell).
        distribution: the PyPI distribution whose version is recorded (None: the stdlib or this repo).
    """

    label: str
    target: str
    loops: tuple[str, ...]
    requires: tuple[str, ...] = ()
    distribution: str | None = None


ASYNCIO_LOOPS = ("asyncio", "uvloop")
ALL_LOOPS = ("asyncio", "uvloop", "trio")

# The order is the order of the columns in the report.
PEERS: dict[str, PeerInfo] = {
    "procpool": PeerInfo("procpool", "procpool_peer:ProcpoolPeer", ALL_LOOPS, ("procpool",), "procpool"),
    "rawpipe": PeerInfo("raw pipe", "rawpipe_peer:RawPipePeer", ASYNCIO_LOOPS),
    "ppe": PeerInfo("stdlib PPE", "stdlib_peer:ProcessPoolExecutorPeer", ASYNCIO_LOOPS),
    "ppe-forkserver": PeerInfo(
        "stdlib PPE, forkserver", "stdlib_peer:ForkserverProcessPoolExecutorPeer", ASYNCIO_LOOPS
    ),
    "anyio": PeerInfo("anyio to_process", "anyio_peer:AnyioPeer", ASYNCIO_LOOPS, ("anyio",), "anyio"),
    "aiomultiprocess": PeerInfo(
        "aiomultiprocess",
        "aiomultiprocess_peer:AiomultiprocessPeer",
        ASYNCIO_LOOPS,
        ("aiomultiprocess",),
        "aiomultiprocess",
    ),
    "pebble": PeerInfo("pebble", "pebble_peer:PebblePeer", ASYNCIO_LOOPS, ("pebble",), "pebble"),
    "trio-parallel": PeerInfo(
        "trio-parallel", "trio_parallel_peer:TrioParallelPeer", ("trio",), ("trio_parallel",), "trio-parallel"
    ),
}

# Not peers but references: they show what procpool could at best reach, not whom it must beat.
REFERENCES = frozenset({"procpool", "rawpipe"})


def load(name: str) -> type[Peer]:
    """Import the `Peer` class of the peer called ``name``.

    Raises:
        KeyError: no peer has that name.
    """
    module_name, class_name = PEERS[name].target.split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    peer_class: type[Peer] = getattr(module, class_name)
    return peer_class
