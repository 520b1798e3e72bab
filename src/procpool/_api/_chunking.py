"""How many items each chunk of a map takes when the caller leaves ``chunksize`` out.

A task costs the parent and the worker some tens of microseconds whatever it carries, so a map
of tiny items sent one per task is bound by that cost, not by the work; a map of slow items sent
many per task leaves workers idle at the end while one finishes a big last chunk. The sizer
aims between the two: a chunk that keeps a worker busy for about `TARGET_SECONDS`, measured from
the chunks that came back, and never more than a share of what is left to every worker. Chunks
grow from one item, at most doubling, so a first measure that misleads costs little; the items of
an input without a length are pulled from it only as chunks are sent, so there chunks stay small
enough (`MAX_UNSIZED_ITEMS`) that the map never draws far ahead of its consumer.
"""

from __future__ import annotations

import math

# Long enough that a task's fixed cost is a few percent of the chunk, short enough that the first
# results, progress and a cancellation are not held back noticeably.
TARGET_SECONDS = 0.01
# Bounds the memory a chunk's arguments and results take when items are tiny.
MAX_ITEMS = 65_536
MAX_UNSIZED_ITEMS = 1_024
# What is kept of the earlier chunks' measures as each new one comes: items may get slower or faster.
_KEPT = 0.5
# Chunks in flight, per worker, when the caller leaves max_in_flight out: at least this many...
FEWEST_IN_FLIGHT = 2
# ... and more while chunks are short, enough for this much work a worker (the map refills in
# batches: each refill costs a wake-up of an idle worker, which takes longer than a short chunk)...
IN_FLIGHT_SECONDS = 0.002
# ... but no more than this many: each holds its results until consumed.
MOST_IN_FLIGHT = 8


class ChunkSizer:
    """The size of a map's next chunk: ``chunksize`` if the caller gave one; otherwise 1 until a
    chunk has come back, then measured."""

    def __init__(self, chunksize: int | None, *, workers: int, total: int | None) -> None:
        self._chunksize = chunksize
        self._workers = workers
        self._remaining = total  # items not yet taken into a chunk, if the input has a length
        self._largest = 0  # items in the largest chunk taken so far
        self._measured_items = 0.0  # decayed sums, so a big chunk outweighs a small one
        self._measured_seconds = 0.0

    def next_size(self) -> int:
        """How many items the next chunk should take (call `taken` with what it did take)."""
        if self._chunksize is not None:
            return self._chunksize
        if not self._measured_items:
            return 1  # nothing measured yet: a slow item must not take others hostage
        size = 2 * self._largest
        if self._measured_seconds > 0:
            size = min(size, int(TARGET_SECONDS * self._measured_items / self._measured_seconds))
        if self._remaining is None:
            size = min(size, MAX_UNSIZED_ITEMS)
        else:  # every worker gets a share of the rest, so they end together
            size = min(size, MAX_ITEMS, math.ceil(self._remaining / (2 * self._workers)))
        return max(1, size)

    def in_flight(self) -> int:
        """How many chunks to keep in flight when the caller did not say (``max_in_flight``):
        `FEWEST_IN_FLIGHT` a worker, up to `MOST_IN_FLIGHT` while chunks take less than
        `IN_FLIGHT_SECONDS` each."""
        fewest = FEWEST_IN_FLIGHT * self._workers
        if not self._measured_seconds or not self._largest:
            return fewest
        chunk_seconds = self._measured_seconds / self._measured_items * self._largest
        wanted = math.ceil(self._workers * IN_FLIGHT_SECONDS / chunk_seconds)
        return max(fewest, min(wanted, MOST_IN_FLIGHT * self._workers))

    def taken(self, items: int) -> None:
        """A chunk of ``items`` items was sent."""
        self._largest = max(self._largest, items)
        if self._remaining is not None:
            self._remaining = max(0, self._remaining - items)

    def measured(self, items: int, seconds: float) -> None:
        """A chunk of ``items`` items ran for ``seconds`` in its worker."""
        if items > 0:
            self._measured_items = _KEPT * self._measured_items + items
            self._measured_seconds = _KEPT * self._measured_seconds + max(0.0, seconds)
