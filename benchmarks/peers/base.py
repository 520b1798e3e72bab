"""`Peer`: one way of running a function in a worker process, as every scenario sees it."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any

Call = Callable[..., Awaitable[Any]]
"""``call(fn, *args)`` runs ``fn(*args)`` in a worker; awaiting it gives the result."""


class Peer(abc.ABC):
    """A library's pool of ``workers`` processes, started and closed by the harness.

    `start` returns the most direct awaitable call the library offers, so the scenarios add no
    layer of their own between the await and the library.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers

    @abc.abstractmethod
    async def start(self) -> Call:
        """Create the pool; return the call that runs a function in one of its workers."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop the pool and its workers, as its documentation says to."""

    def details(self) -> dict[str, str]:
        """Facts worth recording with the results, such as the start method."""
        return {}
